/* `sinter devices [--json]`: the version, every device found (CPU first, then
 * CUDA and Vulkan when built in and present) and which one device=auto picks. */
#include "cli.h"
#include "sinter/backend.h"
#include "sinter/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: sinter devices [--json]\n"
            "\n"
            "Lists sinter's version and every device it can use: the CPU, then each CUDA\n"
            "and Vulkan GPU (when built in and a driver is present), with memory total/free,\n"
            "compute units, features, bf16/f16 support and utilisation when known, and\n"
            "which device 'device=auto' picks (a CUDA GPU, else another real GPU, else the CPU;\n"
            "a CPU-type Vulkan device such as lavapipe only when named).\n"
            "\n"
            "options:\n"
            "  --json      one JSON object: {\"version\", \"backends\", \"auto\", \"devices\": [...]}\n"
            "  -h, --help  this text\n"
            "\n" SN_EXIT_CODES_HELP);
}

/* device=auto's pick: the highest sn_device_auto_rank, the first of equals */
static int auto_index(const sn_device_info *d, int n) {
    int best = 0, rank = -1;
    for (int i = 0; i < n; i++) {
        int r = sn_device_auto_rank(&d[i]);
        if (r > rank) rank = r, best = i;
    }
    return best;
}

/* "cpu, cuda, vulkan": the backends this sinter was built with */
static void built_in(char *buf, size_t n) {
    size_t k = 0;
    buf[0] = 0;
    for (int r = 0; r < sn_backend_reg_count() && k < n; r++)
        k += (size_t)snprintf(buf + k, n - k, "%s%s", r ? ", " : "", sn_backend_reg_get(r)->kind);
}

static void print_mem(size_t b) {
    if (!b) printf("unknown");
    else printf("%.1f GiB", (double)b / (1024.0 * 1024.0 * 1024.0));
}

static void print_table(const sn_device_info *d, int n, int pick) {
    char kinds[128];
    built_in(kinds, sizeof kinds);
    printf("sinter %s (backends built in: %s)\n\n", SN_VERSION, kinds);
    for (int i = 0; i < n; i++) {
        char spec[32];
        sn_device_spec(&d[i], spec, sizeof spec);
        printf("%s%-9s %s\n", i == pick ? "* " : "  ", spec, d[i].name);
        printf("    memory        ");
        print_mem(d[i].mem_total);
        printf(" total, ");
        print_mem(d[i].mem_free);
        printf(" free\n");
        printf("    compute units %d%s\n", d[i].compute_units, !strcmp(d[i].kind, "cpu") ? " cores" : "");
        if (strcmp(d[i].kind, "cpu") && d[i].type[0])
            printf("    type          %s%s\n", d[i].type, !strcmp(d[i].type, "cpu") ? " (runs on the CPU)" : "");
        if (d[i].cc_major) printf("    compute cap.  %d.%d\n", d[i].cc_major, d[i].cc_minor);
        printf("    bf16 / f16    %s / %s\n", d[i].bf16 ? "yes" : "no", d[i].f16 ? "yes" : "no");
        if (d[i].features[0]) printf("    features      %s\n", d[i].features);
        if (d[i].utilization >= 0) printf("    utilisation   %d%%\n", d[i].utilization);
    }
    char spec[32];
    sn_device_spec(&d[pick], spec, sizeof spec);
    printf("\ndevice=auto uses %s (*)\n", spec);
    if (n == 1)
        printf("no GPU found: training runs on the CPU. For a GPU, see README.md, 'Building'.\n");
    else if (!strcmp(d[pick].kind, "cpu"))
        printf("the devices above are CPU-type or virtual GPUs: device=auto keeps to the CPU backend; name one "
               "(device=...) to use it.\n");
}

static void print_json(const sn_device_info *d, int n, int pick) {
    sn_json_buf b = {0};
    char spec[32];
    sn_json_buf_printf(&b, "{\n  \"version\": ");
    sn_json_buf_string(&b, SN_VERSION, strlen(SN_VERSION));
    sn_json_buf_puts(&b, ",\n  \"backends\": [");
    for (int r = 0; r < sn_backend_reg_count(); r++) {
        const char *k = sn_backend_reg_get(r)->kind;
        if (r) sn_json_buf_puts(&b, ", ");
        sn_json_buf_string(&b, k, strlen(k));
    }
    sn_json_buf_puts(&b, "]");
    sn_device_spec(&d[pick], spec, sizeof spec);
    sn_json_buf_puts(&b, ",\n  \"auto\": ");
    sn_json_buf_string(&b, spec, strlen(spec));
    sn_json_buf_puts(&b, ",\n  \"devices\": [");
    for (int i = 0; i < n; i++) {
        sn_device_spec(&d[i], spec, sizeof spec);
        sn_json_buf_puts(&b, i ? ",\n    {" : "\n    {");
        sn_json_buf_puts(&b, "\"device\": ");
        sn_json_buf_string(&b, spec, strlen(spec));
        sn_json_buf_puts(&b, ", \"kind\": ");
        sn_json_buf_string(&b, d[i].kind, strlen(d[i].kind));
        sn_json_buf_printf(&b, ", \"index\": %d, \"name\": ", d[i].index);
        sn_json_buf_string(&b, d[i].name, strlen(d[i].name));
        sn_json_buf_printf(&b, ", \"mem_total\": %llu, \"mem_free\": %llu, \"compute_units\": %d",
                           (unsigned long long)d[i].mem_total, (unsigned long long)d[i].mem_free,
                           d[i].compute_units);
        sn_json_buf_puts(&b, ", \"type\": ");
        sn_json_buf_string(&b, d[i].type, strlen(d[i].type));
        if (d[i].cc_major)
            sn_json_buf_printf(&b, ", \"compute_capability\": \"%d.%d\"", d[i].cc_major, d[i].cc_minor);
        sn_json_buf_printf(&b, ", \"bf16\": %s, \"f16\": %s, \"features\": ", d[i].bf16 ? "true" : "false",
                           d[i].f16 ? "true" : "false");
        sn_json_buf_string(&b, d[i].features, strlen(d[i].features));
        if (d[i].utilization >= 0) sn_json_buf_printf(&b, ", \"utilization\": %d", d[i].utilization);
        else sn_json_buf_puts(&b, ", \"utilization\": null");
        sn_json_buf_printf(&b, ", \"auto\": %s}", i == pick ? "true" : "false");
    }
    sn_json_buf_puts(&b, "\n  ]\n}\n");
    if (!b.oom) fputs(b.data, stdout);
    sn_json_buf_free(&b);
}

int sn_cmd_devices(int argc, char **argv) {
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return SN_EXIT_OK;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else {
            fprintf(stderr, "sinter devices: unknown argument '%s' (see sinter devices --help)\n", argv[i]);
            return SN_EXIT_USAGE;
        }
    }
    int n = sn_device_count();
    if (n < 1) n = 1;
    sn_device_info *d = calloc((size_t)n, sizeof *d);
    if (!d) {
        fprintf(stderr, "sinter devices: out of host memory\n");
        return SN_EXIT_DEVICE;
    }
    int got = 0;
    for (int i = 0; i < n; i++) {
        sn_status s = sn_device_get(i, &d[got]);
        if (s != SN_OK) {
            /* one broken device must not hide the others */
            fprintf(stderr, "sinter devices: warning: device %d: %s\n", i, sn_last_error());
            continue;
        }
        got++;
    }
    if (!got) {
        fprintf(stderr, "sinter devices: no device could be queried (not even the CPU): %s\n", sn_last_error());
        free(d);
        return SN_EXIT_DEVICE;
    }
    int pick = auto_index(d, got);
    if (json) print_json(d, got, pick);
    else print_table(d, got, pick);
    free(d);
    return SN_EXIT_OK;
}
