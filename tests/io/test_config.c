/* YAML configuration: defaults, loading, overrides, every error, round trip. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <unistd.h>

#include "sinter/config.h"

static char g_path[256];

static const char *write_yaml(const char *text) {
    snprintf(g_path, sizeof g_path, "/tmp/sn_test_cfg_%ld.yaml", (long)getpid());
    FILE *f = fopen(g_path, "w");
    fputs(text, f);
    fclose(f);
    return g_path;
}

static int teardown(void **state) {
    unlink(g_path);
    return 0;
}

static void expect_msg(sn_status st, sn_status want, const char *needle) {
    if (st != want || !strstr(sn_last_error(), needle)) {
        print_error("got %s '%s'; wanted %s with '%s'\n", sn_status_name(st), sn_last_error(), sn_status_name(want),
                    needle);
        fail();
    }
}

static void expect_str_err(const char *yaml, const char *needle) {
    sn_config c;
    sn_config_defaults(&c);
    c.train.batch_size = 77;
    expect_msg(sn_config_from_yaml_string(yaml, "conf/x.yaml", &c), SN_ERR_CONFIG, needle);
    assert_int_equal(c.train.batch_size, 77); /* unchanged on error */
}

static void test_defaults(void **state) {
    sn_config c;
    sn_config_defaults(&c);
    assert_string_equal(c.name, "crn");
    assert_string_equal(c.device, "auto");
    assert_string_equal(c.out_dir, "runs");
    assert_true(c.data.valid_fraction == 0.1);
    assert_int_equal(c.data.sample_rate, 16000);
    assert_true(c.data.segment_seconds == 4.0);
    assert_true(c.data.snr_db[0] == -5 && c.data.snr_db[1] == 15);
    assert_true(c.data.gain_db[0] == -10 && c.data.gain_db[1] == 0);
    assert_int_equal(c.data.cache_mb, 1024);
    assert_string_equal(c.train.optimizer, "adam");
    assert_true(c.train.lr == 1e-3);
    assert_true(c.train.betas[0] == 0.9 && c.train.betas[1] == 0.999);
    assert_true(c.train.eps == 1e-8);
    assert_string_equal(c.model.name, "crn");
    assert_string_equal(c.model.rnn, "lstm");
    assert_int_equal(c.model.hidden, 1024);
    assert_int_equal(c.model.layers, 2);
    assert_int_equal(c.model.channels[0], 16);
    assert_int_equal(c.model.channels[4], 256);
    assert_int_equal(sn_config_validate(&c), SN_OK);
    assert_true(sn_config_key_count() > 30);
    assert_string_equal(sn_config_key_name(0), "name");
    assert_null(sn_config_key_name(-1));
}

static void test_load(void **state) {
    const char *p = write_yaml("# prototype\n"
                               "name: proto\n"
                               "device: cuda:1\n"
                               "seed: 1234\n"
                               "data:\n"
                               "  clean_dir: data/demo/clean\n"
                               "  noise_dir: \"data/demo/noise dir\"\n"
                               "  segment_seconds: 2\n"
                               "  snr_db: [0, 20.5]\n"
                               "  gain_db:\n"
                               "    - -6\n"
                               "    - -1\n"
                               "train:\n"
                               "  batch_size: 8\n"
                               "  mixed_precision: yes\n"
                               "  tf32: false\n"
                               "  lr: 3e-4\n"
                               "  optimizer: adamw\n"
                               "  betas: [0.8, 0.99]\n"
                               "  schedule: cosine\n"
                               "  max_steps: 100000\n"
                               "model:\n"
                               "  rnn: gru\n"
                               "  hidden: 512\n"
                               "  channels: [8, 16, 32, 64, 128]\n");
    sn_config c;
    sn_status st = sn_config_load(p, &c);
    if (st) print_error("%s\n", sn_last_error());
    assert_int_equal(st, SN_OK);
    assert_string_equal(c.name, "proto");
    assert_string_equal(c.device, "cuda:1");
    assert_int_equal(c.seed, 1234);
    assert_string_equal(c.data.clean_dir, "data/demo/clean");
    assert_string_equal(c.data.noise_dir, "data/demo/noise dir");
    assert_true(c.data.segment_seconds == 2.0);
    assert_true(c.data.snr_db[0] == 0 && c.data.snr_db[1] == 20.5);
    assert_true(c.data.gain_db[0] == -6 && c.data.gain_db[1] == -1);
    assert_int_equal(c.train.batch_size, 8);
    assert_int_equal(c.train.mixed_precision, 1);
    assert_int_equal(c.train.tf32, 0);
    assert_true(c.train.lr == 3e-4);
    assert_string_equal(c.train.optimizer, "adamw");
    assert_true(c.train.betas[0] == 0.8);
    assert_string_equal(c.train.schedule, "cosine");
    assert_int_equal(c.train.max_steps, 100000);
    assert_string_equal(c.model.rnn, "gru");
    assert_int_equal(c.model.hidden, 512);
    assert_int_equal(c.model.channels[4], 128);
    /* untouched keys keep their defaults */
    assert_int_equal(c.data.sample_rate, 16000);
    assert_int_equal(c.model.layers, 2);
    /* empty document = defaults; empty section allowed */
    assert_int_equal(sn_config_from_yaml_string("", "e", &c), SN_OK);
    assert_int_equal(c.train.batch_size, 4);
    assert_int_equal(sn_config_from_yaml_string("train:\ndata: ~\n", "e", &c), SN_OK);
    /* a null string value clears a path */
    assert_int_equal(sn_config_from_yaml_string("data:\n  clean_dir:\n", "e", &c), SN_OK);
    assert_string_equal(c.data.clean_dir, "");
}

static void test_load_errors(void **state) {
    sn_config c;
    expect_msg(sn_config_load("/nonexistent/x.yaml", &c), SN_ERR_IO, "cannot open config '/nonexistent/x.yaml'");
    /* malformed YAML: libyaml's problem with line and column */
    expect_str_err("train:\n  batch_size: [1, 2\n", "conf/x.yaml:3:1: YAML syntax error");
    expect_str_err("a: b\n c: d\n  - e\n", "YAML syntax error");
    expect_str_err("train: {lr: 1\n", "YAML syntax error");
    /* the message through a real file names the file */
    const char *p = write_yaml("name: x\ntrain:\n  batch_size: 4\n\n\n\n  bach_size: 8\n");
    expect_msg(sn_config_load(p, &c), SN_ERR_CONFIG, ":7: unknown key 'train.bach_size'; did you mean 'train.batch_size'?");
    assert_non_null(strstr(sn_last_error(), p));
    /* unknown keys */
    expect_str_err("optimiser: adam\n", "conf/x.yaml:1: unknown key 'optimiser'");
    expect_str_err("train:\n  sample_rate: 8000\n", "unknown key 'train.sample_rate'; did you mean 'data.sample_rate'?");
    expect_str_err("trian:\n  lr: 1\n", "unknown key 'trian'; did you mean");
    expect_str_err("zzzzzzzzzzzzzzzz: 1\n", "valid keys are");
    /* wrong types */
    expect_str_err("train:\n  batch_size: eight\n", "conf/x.yaml:2: train.batch_size: expected an integer, got 'eight'");
    expect_str_err("train:\n  batch_size: 2.5\n", "expected an integer, got '2.5'");
    expect_str_err("train:\n  lr: fast\n", "train.lr: expected a number, got 'fast'");
    expect_str_err("train:\n  lr: .inf\n", "expected a number");
    expect_str_err("train:\n  lr: 0x10\n", "expected a number");
    expect_str_err("train:\n  mixed_precision: maybe\n", "train.mixed_precision: expected true, false, bf16 or f16, got 'maybe'");
    expect_str_err("train:\n  mixed_precision: [bf16]\n", "train.mixed_precision: expected true, false, bf16 or f16, got a list");
    expect_str_err("train:\n  lr: [1]\n", "train.lr: expected a number, got a list");
    expect_str_err("train:\n  batch_size:\n", "train.batch_size: expected an integer, got an empty value");
    expect_str_err("data:\n  snr_db: 5\n", "data.snr_db: expected a list of two numbers [lo, hi], got a scalar");
    expect_str_err("data:\n  snr_db: [1, 2, 3]\n", "got 3 elements");
    expect_str_err("data:\n  snr_db: [1, x]\n", "data.snr_db[1]: expected a number, got 'x'");
    expect_str_err("data:\n  snr_db: [1, [2]]\n", "data.snr_db[1]: expected a number, got a list");
    expect_str_err("model:\n  channels: [1, 2, 3]\n", "model.channels: expected a list of 5 integers, got 3 elements");
    expect_str_err("train: 5\n", "conf/x.yaml:1: 'train' must be a mapping of train.* keys, got a scalar");
    expect_str_err("- a\n- b\n", "the config must be a mapping");
    expect_str_err("[a]: 1\n", "keys must be plain names");
    /* out of range */
    expect_str_err("train:\n  batch_size: 0\n", "conf/x.yaml:2: train.batch_size = 0 is out of range; it must be in [1,");
    expect_str_err("train:\n  lr: 0\n", "train.lr = 0 is out of range; it must be in (0,");
    expect_str_err("train:\n  lr: -1e-3\n", "train.lr = -0.001 is out of range");
    expect_str_err("data:\n  valid_fraction: 0.7\n", "data.valid_fraction = 0.7 is out of range; it must be in [0, 0.5]");
    expect_str_err("data:\n  segment_seconds: 0\n", "segment_seconds = 0 is out of range");
    expect_str_err("train:\n  num_workers: -1\n", "num_workers = -1 is out of range");
    expect_str_err("train:\n  betas: [0.9, 1.0]\n", "train.betas[1] = 1 is out of range; it must be in [0, 1)");
    expect_str_err("data:\n  snr_db: [10, 5]\n", "data.snr_db = [10, 5]: lo must not exceed hi");
    expect_str_err("model:\n  channels: [16, 32, 0, 128, 256]\n", "model.channels[2] = 0 is out of range");
    expect_str_err("train:\n  max_steps: 99999999999999999999\n", "expected an integer");
    /* enums and devices */
    expect_str_err("train:\n  optimizer: adagrad\n", "train.optimizer = 'adagrad' is not valid; choose one of: adam adamw sgd");
    expect_str_err("model:\n  rnn: lstmm\n", "choose one of: lstm gru attention");
    expect_str_err("device: gpu\n", "device = 'gpu' is not valid; use auto, cpu, cuda, cuda:N, vulkan or vulkan:N");
    expect_str_err("device: 'cuda:'\n", "is not valid");
    expect_str_err("device: cuda:x\n", "is not valid");
    /* duplicates and multiple documents */
    expect_str_err("seed: 1\nseed: 2\n", "conf/x.yaml:2: key 'seed' appears twice (first at line 1)");
    expect_str_err("seed: 1\n---\nseed: 2\n", "second YAML document");
    expect_str_err("name: \"a\\0b\"\n", "NUL");
    char longname[400];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    char y[500];
    snprintf(y, sizeof y, "name: %s\n", longname);
    expect_str_err(y, "at most 127 are allowed");
}

static void test_overrides(void **state) {
    sn_config c;
    sn_config_defaults(&c);
    assert_int_equal(sn_config_override(&c, "train.batch_size=8"), SN_OK);
    assert_int_equal(c.train.batch_size, 8);
    assert_int_equal(sn_config_override(&c, "train.lr=3e-4"), SN_OK);
    assert_true(c.train.lr == 3e-4);
    assert_int_equal(sn_config_override(&c, "device=cuda:0"), SN_OK);
    assert_string_equal(c.device, "cuda:0");
    assert_int_equal(sn_config_override(&c, "train.betas=[0.5, 0.9]"), SN_OK);
    assert_true(c.train.betas[0] == 0.5 && c.train.betas[1] == 0.9);
    assert_int_equal(sn_config_override(&c, "train.mixed_precision=true"), SN_OK);
    assert_int_equal(c.train.mixed_precision, SN_MP_AUTO);
    /* the 16-bit type by name, as PyTorch's autocast dtype; old boolean configs keep working */
    assert_int_equal(sn_config_override(&c, "train.mixed_precision=bf16"), SN_OK);
    assert_int_equal(c.train.mixed_precision, SN_MP_BF16);
    assert_int_equal(sn_config_override(&c, "train.mixed_precision=fp16"), SN_OK);
    assert_int_equal(c.train.mixed_precision, SN_MP_F16);
    assert_int_equal(sn_config_override(&c, "train.mixed_precision=off"), SN_OK);
    assert_int_equal(c.train.mixed_precision, SN_MP_OFF);
    assert_int_equal(sn_config_override(&c, "train.mixed_precision=fp8"), SN_ERR_CONFIG);
    assert_non_null(strstr(sn_last_error(), "expected true, false, bf16 or f16, got 'fp8'"));
    assert_int_equal(sn_config_override(&c, "data.clean_dir=/data/a: b #c"), SN_OK);
    assert_string_equal(c.data.clean_dir, "/data/a: b #c");
    assert_int_equal(sn_config_override(&c, "data.noise_dir="), SN_OK);
    assert_string_equal(c.data.noise_dir, "");
    assert_int_equal(sn_config_override(&c, "model.channels=[1,2,3,4,5]"), SN_OK);
    assert_int_equal(c.model.channels[4], 5);

    c.train.batch_size = 8;
    expect_msg(sn_config_override(&c, "train.batch_size"), SN_ERR_CONFIG,
               "override 'train.batch_size': expected key=value, e.g. train.lr=3e-4");
    expect_msg(sn_config_override(&c, "=3"), SN_ERR_CONFIG, "key before '=' is empty");
    expect_msg(sn_config_override(&c, "+train.x=3"), SN_ERR_CONFIG, "not supported");
    expect_msg(sn_config_override(&c, "Train.lr=3"), SN_ERR_CONFIG, "has a character that no key has");
    expect_msg(sn_config_override(&c, "train.bach_size=8"), SN_ERR_CONFIG,
               "override 'train.bach_size=8': unknown key 'train.bach_size'; did you mean 'train.batch_size'?");
    expect_msg(sn_config_override(&c, "train=8"), SN_ERR_CONFIG, "'train' is a section");
    expect_msg(sn_config_override(&c, "train.batch_size=abc"), SN_ERR_CONFIG,
               "override 'train.batch_size=abc': train.batch_size: expected an integer, got 'abc'");
    expect_msg(sn_config_override(&c, "train.batch_size=-3"), SN_ERR_CONFIG, "out of range");
    expect_msg(sn_config_override(&c, "train.batch_size="), SN_ERR_CONFIG, "empty value");
    expect_msg(sn_config_override(&c, "train.betas=[0.5"), SN_ERR_CONFIG, "is not valid YAML");
    expect_msg(sn_config_override(&c, "device=tpu"), SN_ERR_CONFIG, "device = 'tpu' is not valid");
    assert_int_equal(c.train.batch_size, 8); /* unchanged by the failures */
}

static void test_validate(void **state) {
    sn_config c;
    sn_config_defaults(&c);
    c.train.epochs = 0;
    expect_msg(sn_config_validate(&c), SN_ERR_CONFIG, "both 0");
    c.train.max_steps = 10;
    assert_int_equal(sn_config_validate(&c), SN_OK);
    c.train.warmup_steps = 20;
    expect_msg(sn_config_validate(&c), SN_ERR_CONFIG, "warmup_steps");
    sn_config_defaults(&c);
    strcpy(c.data.noisy_dir, "x");
    expect_msg(sn_config_validate(&c), SN_ERR_CONFIG, "paired layout");
}

static void test_suggest(void **state) {
    assert_string_equal(sn_config_suggest("train.bach_size"), "train.batch_size");
    assert_string_equal(sn_config_suggest("model.hiden"), "model.hidden");
    assert_string_equal(sn_config_suggest("sed"), "seed");
    assert_string_equal(sn_config_suggest("model.lr"), "train.lr");
    assert_null(sn_config_suggest("qqqqqqqqqqqqqqqqqqqq"));
}

static void test_roundtrip(void **state) {
    sn_config a, b;
    sn_config_defaults(&a);
    sn_config_override(&a, "name=run \"quoted\"\\ ü");
    sn_config_override(&a, "data.clean_dir=/tmp/x: y # z\t");
    sn_config_override(&a, "train.lr=0.1");
    sn_config_override(&a, "train.eps=1e-12");
    sn_config_override(&a, "seed=-9007199254740993");
    sn_config_override(&a, "data.snr_db=[-2.5, 1e-7]");
    sn_config_override(&a, "train.optimizer=sgd");
    sn_config_override(&a, "model.rnn=attention");
    sn_config_override(&a, "train.tf32=on");
    sn_config_override(&a, "train.mixed_precision=bf16");
    a.data.segment_seconds = 1.0 / 3.0;
    char *y = NULL;
    assert_int_equal(sn_config_to_yaml(&a, &y), SN_OK);
    sn_status st = sn_config_from_yaml_string(y, "resolved", &b);
    if (st) print_error("%s\n---\n%s\n", sn_last_error(), y);
    assert_int_equal(st, SN_OK);
    assert_memory_equal(&a, &b, sizeof a); /* both started from memset(0) defaults */
    /* and through a file */
    const char *p = write_yaml(y);
    sn_config c;
    assert_int_equal(sn_config_load(p, &c), SN_OK);
    assert_memory_equal(&a, &c, sizeof a);
    assert_non_null(strstr(y, "train:\n  batch_size: 4\n"));
    assert_non_null(strstr(y, "  mixed_precision: bf16\n"));
    free(y);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults), cmocka_unit_test(test_load),     cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_overrides), cmocka_unit_test(test_validate), cmocka_unit_test(test_suggest),
        cmocka_unit_test(test_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
