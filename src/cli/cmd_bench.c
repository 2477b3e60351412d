#include "cli.h"
#include <stdio.h>
int sn_cmd_bench(int argc, char **argv) { (void)argc; (void)argv; printf("usage: sinter bench\n"); return 0; }
