/*
 * cli_pull.h - the `herd pull` subcommand (a client of a running herd).
 */
#ifndef COORD_CLI_PULL_H
#define COORD_CLI_PULL_H

/* argv: what follows "pull". Returns the exit code. */
int herd_cli_pull(int argc, char **argv);

#endif /* COORD_CLI_PULL_H */
