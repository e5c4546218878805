/*
 * modelcat.h - a model's category from its name (pure): "coding",
 * "reasoning", "creative", "vision", "embedding", "image" or "general",
 * by ollama-herd's name rules (reference §8.2, classify_model's fallback).
 * The VRAM fallback only swaps a model for another of the same category.
 */
#ifndef COORD_MODELCAT_H
#define COORD_MODELCAT_H

const char *modelcat_classify(const char *model);

#endif /* COORD_MODELCAT_H */
