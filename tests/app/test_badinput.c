/* The bad-input suite: broken configs, audio, checkpoints and command lines
 * given to the built `sinter` binary, each with the exit code of the one table
 * (src/cli/cli.h) and a phrase its message must hold. Also one case per exit
 * code per subcommand where that code applies. */
#include "sn_test.h"
#include "sinter/audio.h"
#include "app_util.h"
#include "app_run.h"
#include "app_cli.h"

#include <math.h>
#include <sys/stat.h>

/* Fixtures, made once: paths substituted for @NAME in the arguments. */
static struct { const char *name; char path[400]; } fx[] = {
    {"conf"}, {"ckpt"}, {"plain"}, {"nanckpt"}, {"badcfgckpt"}, {"truncckpt"}, {"good"}, {"nanwav"}, {"rate1"},
    {"empty"}, {"garbage"}, {"silent"}, {"dir"}, {"linkdir"}, {"out"}, {"synerr"}, {"unknownkey"}, {"dupkey"},
    {"deep"}, {"big"}, {"notmap"}, {"rundir_noconf"}, {"file"}, {"zero"}, {"runs"},
};
#define NFX ((int)(sizeof fx / sizeof fx[0]))

static const char *F(const char *name) {
    for (int i = 0; i < NFX; i++)
        if (!strcmp(fx[i].name, name)) return fx[i].path;
    fail_msg("no fixture %s", name);
    return NULL;
}

/* A WAV written byte by byte (libsndfile refuses NaN and 1 Hz): format 1 PCM16 or 3 float. */
static void raw_wav(const char *path, int rate, int fmt, const float *x, int n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    int bps = fmt == 3 ? 4 : 2;
    uint32_t data = (uint32_t)(n * bps), riff = 36 + data, br = (uint32_t)(rate * bps), u32;
    uint16_t u16;
    fwrite("RIFF", 1, 4, f), fwrite(&riff, 4, 1, f), fwrite("WAVEfmt ", 1, 8, f);
    u32 = 16, fwrite(&u32, 4, 1, f);
    u16 = (uint16_t)fmt, fwrite(&u16, 2, 1, f);
    u16 = 1, fwrite(&u16, 2, 1, f);
    u32 = (uint32_t)rate, fwrite(&u32, 4, 1, f);
    fwrite(&br, 4, 1, f);
    u16 = (uint16_t)bps, fwrite(&u16, 2, 1, f);
    u16 = (uint16_t)(8 * bps), fwrite(&u16, 2, 1, f);
    fwrite("data", 1, 4, f), fwrite(&data, 4, 1, f);
    for (int i = 0; i < n; i++) {
        if (fmt == 3) fwrite(&x[i], 4, 1, f);
        else {
            int16_t v = (int16_t)lrintf(x[i] * 32767.0f);
            fwrite(&v, 2, 1, f);
        }
    }
    fclose(f);
}

static void save_model(const sn_config *c, const char *path, int poison, int with_config) {
    sn_backend *b = sn_cpu_backend_new(1);
    sn_crn_config cc;
    sn_model *m = NULL;
    SN_ASSERT_OK(sn_crn_config_from(c, &cc));
    SN_ASSERT_OK(sn_crn_new(&cc, b, &m));
    SN_ASSERT_OK(sn_model_init(m, 1));
    if (poison) {
        int64_t k = sn_nelem(m->t[0]);
        float *v = calloc((size_t)k, sizeof *v);
        v[k / 2] = NAN;
        SN_ASSERT_OK(sn_tensor_set(m->t[0], v, k));
        free(v);
    }
    SN_ASSERT_OK(sn_ckpt_save(m, NULL, NULL, with_config ? c : NULL, path));
    sn_model_free(m);
    sn_backend_free(b);
}

static int setup(void **state) {
    (void)state;
    const char *names[NFX];
    for (int i = 0; i < NFX; i++) names[i] = fx[i].name;
    char file[300];
    for (int i = 0; i < NFX; i++) {
        snprintf(file, sizeof file, "bi_%s", names[i]);
        if (strstr(names[i], "ckpt") || !strcmp(names[i], "plain")) strcat(file, ".safetensors");
        else if (strstr(names[i], "wav") || !strcmp(names[i], "good") || !strcmp(names[i], "rate1") ||
                 !strcmp(names[i], "empty") || !strcmp(names[i], "garbage") || !strcmp(names[i], "silent"))
            strcat(file, ".wav");
        else if (strcmp(names[i], "dir") && strcmp(names[i], "linkdir") && strcmp(names[i], "out") &&
                 strcmp(names[i], "rundir_noconf") && strcmp(names[i], "runs") && strcmp(names[i], "file"))
            strcat(file, ".yaml");
        app_path(fx[i].path, sizeof fx[i].path, file);
    }
    sn_config c;
    app_config(&c);
    snprintf(c.out_dir, sizeof c.out_dir, "%s", F("runs"));
    cli_write_conf(&c, "bi_conf.yaml", fx[0].path, sizeof fx[0].path);
    save_model(&c, F("ckpt"), 0, 1);
    save_model(&c, F("plain"), 0, 0);
    save_model(&c, F("nanckpt"), 1, 1);
    /* a checkpoint whose config does not parse; one cut in half */
    sn_safetensors *f;
    SN_ASSERT_OK(sn_st_open(F("ckpt"), &f));
    sn_st_writer *w = sn_st_writer_new();
    for (int i = 0; i < sn_st_count(f); i++) {
        const sn_st_tensor *t = sn_st_get(f, i);
        SN_ASSERT_OK(sn_st_add(w, t->name, t->dtype, t->ndim, t->shape, sn_st_data(f, t)));
    }
    for (int i = 0; i < sn_st_meta_count(f); i++) {
        const char *k = sn_st_meta_key(f, i);
        SN_ASSERT_OK(sn_st_set_meta(w, k, strcmp(k, "sinter.config") ? sn_st_meta(f, k) : "model: {rnn: [}"));
    }
    SN_ASSERT_OK(sn_st_save(w, F("badcfgckpt")));
    sn_st_writer_free(w);
    sn_st_close(f);
    char *whole = app_slurp(F("ckpt"));
    struct stat sb;
    stat(F("ckpt"), &sb);
    FILE *t = fopen(F("truncckpt"), "wb");
    fwrite(whole, 1, (size_t)sb.st_size / 2, t);
    fclose(t);
    free(whole);
    /* audio */
    float x[16000];
    for (int i = 0; i < 16000; i++) x[i] = 0.3f * sinf(0.07f * (float)i) + 0.05f * sinf(0.9f * (float)i);
    SN_ASSERT_OK(sn_audio_write(F("good"), x, 16000, 1, 16000, 0));
    x[500] = NAN;
    raw_wav(F("nanwav"), 16000, 3, x, 16000);
    x[500] = 0;
    raw_wav(F("rate1"), 1, 1, x, 64);
    cli_write_file(F("empty"), "");
    cli_write_file(F("garbage"), "RIFF this is not a wave file at all, just text pretending");
    float z[16000] = {0};
    SN_ASSERT_OK(sn_audio_write(F("silent"), z, 16000, 1, 16000, 0));
    mkdir(F("dir"), 0755);
    /* a folder of audio with one broken link in it */
    mkdir(F("linkdir"), 0755);
    char p[600];
    snprintf(p, sizeof p, "%s/a.wav", F("linkdir"));
    SN_ASSERT_OK(sn_audio_write(p, x, 16000, 1, 16000, 0));
    snprintf(p, sizeof p, "%s/gone.wav", F("linkdir"));
    if (symlink("/nonexistent/target.wav", p) != 0) return -1;
    /* configs */
    cli_write_file(F("synerr"), "train:\n  batch_size: [1, 2\n");
    cli_write_file(F("unknownkey"), "train:\n  bach_size: 8\n");
    cli_write_file(F("dupkey"), "seed: 1\nseed: 2\n");
    FILE *d = fopen(F("deep"), "w");
    for (int i = 0; i < 200000; i++) fputc('[', d);
    fclose(d);
    d = fopen(F("big"), "w");
    for (int i = 0; i < 40000; i++) fputs("# padding padding padding padding padding\n", d);
    fclose(d);
    cli_write_file(F("notmap"), "train: 5\n");
    mkdir(F("rundir_noconf"), 0755);
    cli_write_file(F("file"), "a regular file\n");
    cli_write_file(F("zero"), "");
    mkdir(F("runs"), 0755);
    return 0;
}

typedef struct bcase {
    const char *args[16]; /* @name = a fixture's path */
    int rc;
    const char *phrase;   /* in stderr or stdout */
} bcase;

static const bcase cases[] = {
    /* the command line */
    {{NULL}, 2, "usage: sinter <command>"},
    {{"trian"}, 2, "did you mean 'train'"},
    {{"--bogus"}, 2, "options go after the command"},
    {{"help", "nosuch"}, 2, "unknown command 'nosuch'"},
    {{"--help"}, 0, "exit codes (the same for every command)"},
    {{"devices"}, 0, "cpu"},
    {{"devices", "--bogus"}, 2, "--bogus"},
    {{"bench", "--bogus"}, 2, "--bogus"},
    {{"bench", "--device", "cuda:9", "--quick"}, 4, "cuda"},
    {{"data"}, 2, "usage"},
    {{"data", "bogus"}, 2, "unknown command 'bogus'"},
    {{"data", "demo"}, 2, "--out DIR is required"},
    {{"data", "demo", "--out", "@out", "--minutes", "-1"}, 2, "--minutes"},
    {{"data", "demo", "--out", "@out", "--seed", "3.2e35"}, 2, "--seed must be a whole number"}, /* fuzzer find: UB cast */
    {{"data", "demo", "--out", "@out", "--seed", "99999999999999999999999"}, 2, "--seed must be a whole number"},
    {{"data", "demo", "--out", "@file/sub", "--minutes", "0.01", "--synth"}, 3, "bi_file"},
    /* configs */
    {{"train", "@dir/missing.yaml"}, 3, "cannot open config"},
    {{"train", "@dir"}, 3, "is a folder, not a file"},
    {{"train", "@zero"}, 2, "no training data"}, /* an empty file is the defaults: no data */
    {{"train", "@conf", "train.bach_size=8"}, 2, "did you mean 'train.batch_size'"},
    {{"train", "@conf", "train.batch_size=0"}, 2, "must be in [1, 1048576]"},
    {{"train", "@conf", "train.batch_size=abc"}, 2, "expected an integer, got 'abc'"},
    {{"train", "@conf", "train.lr=-1"}, 2, "train.lr = -1 is out of range"},
    {{"train", "@conf", "device=gpu7"}, 2, "device = 'gpu7' is not valid"},
    {{"train", "@conf", "name=../x"}, 2, "not a valid run name"},
    {{"train", "@conf", "train"}, 2, "unexpected argument 'train'"},
    {{"train", "@conf", "=5"}, 2, "the key before '=' is empty"},
    {{"train", "@synerr"}, 2, "YAML syntax error"},
    {{"train", "@unknownkey"}, 2, "did you mean 'train.batch_size'"},
    {{"train", "@dupkey"}, 2, "appears twice"},
    {{"train", "@deep"}, 2, "nested deeper than 64"},
    {{"train", "@big"}, 2, "larger than 1048576 bytes"},
    {{"train", "@notmap"}, 2, "'train' must be a mapping"},
    {{"train", "@conf", "--max-steps", "-3"}, 2, "non-negative integer"},
    {{"train", "@conf", "--bogus"}, 2, "unknown option '--bogus'"},
    {{"train", "@conf", "--max-steps"}, 2, "needs a value"},
    {{"train", "--resume", "@dir/nope"}, 3, "no such run directory"},
    {{"train", "--resume", "@rundir_noconf"}, 3, "not a sinter run directory"},
    {{"train", "--resume", "@file"}, 3, "it is a file"},
    {{"train", "@conf", "data.clean_dir=@dir/nothing", "--quiet"}, 3, "nothing"},
    {{"train", "@conf", "device=cuda:5", "--quiet"}, 4, "cuda"},
    {{"train", "@conf", "name=nan", "--nan-at-step", "2", "--max-steps", "4", "--threads", "1", "--quiet"}, 1,
     "became NaN"},
    {{"train", "@conf", "name=ok", "--max-steps", "1", "--threads", "1", "--quiet"}, 0, NULL},
    /* checkpoints, through enhance */
    {{"enhance"}, 2, "--ckpt CKPT is required"},
    {{"enhance", "--ckpt", "@ckpt", "@good"}, 2, "-o OUT is required"},
    {{"enhance", "--ckpt", "@dir/none.safetensors", "@good", "-o", "@out/a.wav"}, 3, "not found"},
    {{"enhance", "--ckpt", "@dir", "@good", "-o", "@out/a.wav"}, 3, "is a folder"},
    {{"enhance", "--ckpt", "@good", "@good", "-o", "@out/a.wav"}, 3, "bi_good.wav"},
    {{"enhance", "--ckpt", "@truncckpt", "@good", "-o", "@out/a.wav"}, 3, "bi_truncckpt"},
    {{"enhance", "--ckpt", "@plain", "@good", "-o", "@out/a.wav"}, 2, "no sinter config inside"},
    {{"enhance", "--ckpt", "@nanckpt", "@good", "-o", "@out/a.wav"}, 3, "NaN/Inf"},
    {{"enhance", "--ckpt", "@badcfgckpt", "@good", "-o", "@out/a.wav"}, 3, "sinter.config"},
    {{"enhance", "--ckpt", "@ckpt", "@good", "-o", "@out/a.wav", "--device", "cuda:9"}, 4, "cuda"},
    {{"enhance", "--ckpt", "@ckpt", "@good", "-o", "@out/a.wav", "--chunk-seconds", "-1"}, 2, "--chunk-seconds"},
    {{"enhance", "--ckpt", "@ckpt", "@good", "-o", "@good"}, 2, "is the input file"},
    {{"enhance", "--ckpt", "@ckpt", "@good", "@good", "-o", "@out/twice"}, 2, "would both be written"},
    {{"enhance", "--ckpt", "@ckpt", "@good", "-o", "@out/ok.wav", "--device", "cpu"}, 0, "enhanced 1 file"},
    /* audio, through enhance */
    {{"enhance", "--ckpt", "@ckpt", "@dir/none.wav", "-o", "@out/a.wav"}, 3, "not found"},
    {{"enhance", "--ckpt", "@ckpt", "@garbage", "-o", "@out/a.wav"}, 3, "not a recognised audio file"},
    {{"enhance", "--ckpt", "@ckpt", "@empty", "-o", "@out/a.wav"}, 3, "is empty (0 bytes)"},
    {{"enhance", "--ckpt", "@ckpt", "@nanwav", "-o", "@out/a.wav"}, 3, "non-finite sample (NaN)"},
    {{"enhance", "--ckpt", "@ckpt", "@rate1", "-o", "@out/a.wav"}, 3, "1 Hz"},
    {{"enhance", "--ckpt", "@ckpt", "@dir", "-o", "@out/emptydir"}, 3, "no audio files"},
    {{"enhance", "--ckpt", "@ckpt", "@linkdir", "-o", "@out/linked", "--device", "cpu"}, 0, "a broken link"},
    /* audio, through metrics */
    {{"metrics", "@good"}, 2, "need two files"},
    {{"metrics", "@good", "@good", "@good"}, 2, "too many files"},
    {{"metrics", "--bogus"}, 2, "unknown option"},
    {{"metrics", "@dir/none.wav", "@good"}, 3, "none.wav"},
    {{"metrics", "@nanwav", "@good"}, 3, "non-finite sample (NaN)"},
    {{"metrics", "@rate1", "@rate1"}, 3, "1 Hz"},
    {{"metrics", "@silent", "@good"}, 0, "is silent"},
    {{"metrics", "@good", "@good"}, 0, "SI-SDR"},
    /* model */
    {{"model"}, 2, "usage"},
    {{"model", "@dir/missing.yaml"}, 3, "cannot open config"},
    {{"model", "@conf", "model.hidden=0"}, 2, "model.hidden"},
    {{"model", "@conf", "--threads", "1"}, 0, "parameters"},
    /* eval */
    {{"eval"}, 2, "--ckpt"},
    {{"eval", "--ckpt", "@dir/none.safetensors"}, 3, "none.safetensors"},
    {{"eval", "--ckpt", "@ckpt", "@dir/missing.yaml"}, 3, "cannot open config"},
    {{"eval", "--ckpt", "@ckpt", "@conf", "device=cuda:9"}, 4, "cuda"},
    {{"eval", "--ckpt", "@ckpt", "@conf", "train.batch_size=x"}, 2, "expected an integer"},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

/* "@name/rest" -> fixture path + "/rest" */
static const char *subst(const char *a, char *buf, size_t n) {
    if (a[0] != '@') return a;
    const char *slash = strchr(a, '/');
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)(slash ? slash - a - 1 : (long)strlen(a) - 1), a + 1);
    snprintf(buf, n, "%s%s", F(name), slash ? slash : "");
    return buf;
}

static void test_bad_inputs(void **state) {
    (void)state;
    int failed = 0;
    for (int i = 0; i < NCASES; i++) {
        const char *args[17];
        char bufs[16][700];
        int n = 0;
        for (; n < 16 && cases[i].args[n]; n++) args[n] = subst(cases[i].args[n], bufs[n], sizeof bufs[n]);
        args[n] = NULL;
        int rc = cli_run(args);
        char *e = app_slurp(g_cli_err), *o = app_slurp(g_cli_out);
        int ok = rc == cases[i].rc && (!cases[i].phrase || strstr(e, cases[i].phrase) || strstr(o, cases[i].phrase));
        if (!ok) {
            failed++;
            print_message("case %d (sinter %s %s %s ...): exit %d, want %d with '%s'\n  stderr: %.600s\n", i,
                          n > 0 ? args[0] : "", n > 1 ? args[1] : "", n > 2 ? args[2] : "", rc, cases[i].rc,
                          cases[i].phrase ? cases[i].phrase : "", e);
        }
        /* never a crash: a signal would show as 128+N */
        assert_true(rc < 128);
        free(e);
        free(o);
    }
    print_message("%d bad-input cases, %d failed\n", NCASES, failed);
    assert_int_equal(failed, 0);
}

/* Every exit code of the table that applies to a subcommand appears above for it. */
static void test_codes_per_command(void **state) {
    (void)state;
    static const struct { const char *cmd; int codes[6]; } want[] = {
        {"train", {0, 1, 2, 3, 4, -1}}, {"enhance", {0, 2, 3, 4, -1}}, {"metrics", {0, 2, 3, -1}},
        {"eval", {2, 3, 4, -1}},        {"data", {2, 3, -1}},          {"devices", {0, 2, -1}},
        {"bench", {2, 4, -1}},         {"model", {0, 2, 3, -1}},
    };
    for (size_t w = 0; w < sizeof want / sizeof want[0]; w++)
        for (int k = 0; want[w].codes[k] >= 0; k++) {
            int found = 0;
            for (int i = 0; i < NCASES && !found; i++)
                found = cases[i].args[0] && !strcmp(cases[i].args[0], want[w].cmd) && cases[i].rc == want[w].codes[k];
            if (!found) fail_msg("no case gives exit %d for sinter %s", want[w].codes[k], want[w].cmd);
        }
    assert_true(NCASES >= 40);
}

int main(void) {
    app_corpus();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codes_per_command),
        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
