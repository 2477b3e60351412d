#include "cli.h"
#include <stdio.h>
int sn_cmd_enhance(int argc, char **argv) { (void)argc; (void)argv; printf("usage: sinter enhance\n"); return 0; }
