/*
 * modelname.h - reading sizes out of Ollama model names and tags.
 *
 * Parameter counts ("8b", "1.5B", "567m") and GGUF quantisation types
 * ("q4_K_M", "fp16") as tags spell them, shared by the coordinator's size
 * estimate and herd-sim's catalogue. Pure; no allocation.
 */
#ifndef HERD_MODELNAME_H
#define HERD_MODELNAME_H

#include <stddef.h>

/* A plain decimal of p[0..n): digits and at most one '.', finite. 0 or
 * -EINVAL. */
int modelname_decimal(const char *p, size_t n, double *out);

/*
 * A count with its unit, in billions: "27b" -> 27, "567m" -> 0.567,
 * "1t" -> 1000, "4k" -> 4e-6. The unit (any case) must be one of the
 * lower-case letters in units: the scorer passes "bmt" because a "32k" in
 * a tag is a context size, herd-sim's catalogue "bmtk". The value must be
 * above 0. 0 or -EINVAL.
 */
int modelname_count(const char *p, size_t n, const char *units, double *out);

/*
 * Bits per weight of a GGUF quantisation type named by s[0..n), any case,
 * "fp16"/"fp32" as aliases of F16/F32 (llama.cpp's figures). *canon, when
 * not NULL, gets the canonical spelling ("Q4_K_M"). 0 or -EINVAL.
 */
int modelname_quant(const char *s, size_t n, const char **canon, double *bits);

#endif /* HERD_MODELNAME_H */
