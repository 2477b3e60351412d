/* JSON parser and writer helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sinter/json.h"

static sn_json *parse_ok(const char *s) {
    sn_json *v = NULL;
    sn_status st = sn_json_parse(s, strlen(s), "t", &v);
    if (st) print_error("unexpected error: %s\n", sn_last_error());
    assert_int_equal(st, SN_OK);
    return v;
}

static void expect_err(const char *s, const char *needle) {
    sn_json *v = (sn_json *)1;
    sn_status st = sn_json_parse(s, strlen(s), "input", &v);
    assert_int_equal(st, SN_ERR_FORMAT);
    assert_null(v);
    if (!strstr(sn_last_error(), needle)) {
        print_error("message '%s' lacks '%s'\n", sn_last_error(), needle);
        fail();
    }
}

static void test_values(void **state) {
    sn_json *v = parse_ok(" {\"a\": [1, -2.5e3, true, false, null, \"x\"], \"b\": {}, \"c\": []} ");
    assert_int_equal(v->type, SN_JSON_OBJECT);
    assert_int_equal(v->n, 3);
    const sn_json *a = sn_json_get(v, "a");
    assert_non_null(a);
    assert_int_equal(a->n, 6);
    assert_true(a->items[0]->number == 1.0);
    assert_true(a->items[1]->number == -2500.0);
    assert_int_equal(a->items[2]->type, SN_JSON_BOOL);
    assert_true(a->items[2]->boolean);
    assert_false(a->items[3]->boolean);
    assert_int_equal(a->items[4]->type, SN_JSON_NULL);
    assert_string_equal(a->items[5]->str, "x");
    assert_int_equal(sn_json_get(v, "b")->type, SN_JSON_OBJECT);
    assert_int_equal(sn_json_get(v, "c")->n, 0);
    assert_null(sn_json_get(v, "zz"));
    assert_null(sn_json_get(a, "a"));
    sn_json_free(v);
}

static void test_strings(void **state) {
    sn_json *v = parse_ok("\"q\\\"b\\\\s\\/n\\n\\t\\r\\b\\f\\u00e9\\u6F22\\ud83d\\ude00\\u0000z\"");
    const char want[] = "q\"b\\s/n\n\t\r\b\f\xc3\xa9\xe6\xbc\xa2\xf0\x9f\x98\x80\0z";
    assert_int_equal(v->len, sizeof want - 1);
    assert_memory_equal(v->str, want, sizeof want - 1);
    sn_json_free(v);
    v = parse_ok("\"\xc3\xa9\xf0\x9f\x98\x80\"");
    assert_string_equal(v->str, "\xc3\xa9\xf0\x9f\x98\x80");
    sn_json_free(v);
}

static void test_integers(void **state) {
    sn_json *v = parse_ok("[18446744073709551615, 9223372036854775807, -9223372036854775808, 1.0, 1e3, "
                          "18446744073709551616, -1, 0]");
    uint64_t u;
    int64_t i;
    assert_true(sn_json_as_uint64(v->items[0], &u));
    assert_true(u == UINT64_MAX);
    assert_false(sn_json_as_int64(v->items[0], &i));
    assert_true(sn_json_as_int64(v->items[1], &i) && i == INT64_MAX);
    assert_true(sn_json_as_int64(v->items[2], &i) && i == INT64_MIN);
    assert_false(sn_json_as_int64(v->items[3], &i)); /* not written as an integer */
    assert_false(sn_json_as_int64(v->items[4], &i));
    assert_false(sn_json_as_uint64(v->items[5], &u)); /* overflow */
    assert_false(sn_json_as_uint64(v->items[6], &u));
    assert_true(sn_json_as_int64(v->items[6], &i) && i == -1);
    assert_true(sn_json_as_uint64(v->items[7], &u) && u == 0);
    sn_json_free(v);
}

static void test_errors(void **state) {
    expect_err("", "at byte 0: unexpected end of input");
    expect_err("{\"a\" 1}", "at byte 5: expected ':'");
    expect_err("[1,]", "at byte 3");
    expect_err("[1 2]", "expected ',' or ']'");
    expect_err("{\"a\":1,}", "expected a string key");
    expect_err("{'a':1}", "expected a string key");
    expect_err("01", "leading zeros");
    expect_err("1.", "decimal point");
    expect_err("1e", "exponent");
    expect_err("-", "invalid number");
    expect_err("+1", "unexpected character");
    expect_err("tru", "invalid literal");
    expect_err("NaN", "unexpected character");
    expect_err("\"abc", "unterminated string");
    expect_err("\"a\nb\"", "control character");
    expect_err("\"\\x\"", "unknown escape");
    expect_err("\"\\u12G4\"", "4 hex digits");
    expect_err("\"\\ud800\"", "surrogate");
    expect_err("\"\\udc00\"", "lone low surrogate");
    expect_err("\"\xff\"", "invalid UTF-8");
    expect_err("\"\xc0\xaf\"", "invalid UTF-8"); /* overlong */
    expect_err("\"\xed\xa0\x80\"", "invalid UTF-8"); /* encoded surrogate */
    expect_err("{} x", "after the top-level value");
    expect_err("[1", "unterminated array");
    expect_err("{\"a\":1", "unterminated object");
    /* label appears in the message */
    expect_err("[", "input: invalid JSON");
}

static void test_depth(void **state) {
    char deep[SN_JSON_MAX_DEPTH + 2 + SN_JSON_MAX_DEPTH + 2];
    int d = SN_JSON_MAX_DEPTH;
    memset(deep, '[', (size_t)d);
    memset(deep + d, ']', (size_t)d);
    deep[2 * d] = 0;
    sn_json *v = parse_ok(deep);
    sn_json_free(v);
    char *too = malloc(100002);
    memset(too, '[', 100000);
    too[100000] = 0;
    expect_err(too, "nesting deeper");
    free(too);
}

static void test_writer(void **state) {
    sn_json_buf b = {0};
    sn_json_buf_puts(&b, "{");
    sn_json_buf_string(&b, "a\"b\\c\n\x01\xc3\xa9", 9);
    sn_json_buf_puts(&b, ":");
    sn_json_buf_number(&b, 0.1);
    sn_json_buf_printf(&b, ",\"n\":%d", 42);
    sn_json_buf_puts(&b, "}");
    assert_false(b.oom);
    assert_string_equal(b.data, "{\"a\\\"b\\\\c\\n\\u0001\xc3\xa9\":0.10000000000000001,\"n\":42}");
    /* what we write reads back */
    sn_json *v = parse_ok(b.data);
    assert_string_equal(v->keys[0], "a\"b\\c\n\x01\xc3\xa9");
    assert_true(v->items[0]->number == 0.1);
    sn_json_free(v);
    sn_json_buf_free(&b);
    char *e = sn_json_escape("x\ty");
    assert_string_equal(e, "\"x\\ty\"");
    free(e);
    sn_json_buf nb = {0};
    sn_json_buf_number(&nb, 1.0 / 0.0);
    assert_string_equal(nb.data, "null");
    sn_json_buf_free(&nb);
}

static void test_duplicates_kept(void **state) {
    sn_json *v = parse_ok("{\"a\":1,\"a\":2}");
    assert_int_equal(v->n, 2);
    assert_true(sn_json_get(v, "a")->number == 1.0);
    sn_json_free(v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values),   cmocka_unit_test(test_strings), cmocka_unit_test(test_integers),
        cmocka_unit_test(test_errors),   cmocka_unit_test(test_depth),   cmocka_unit_test(test_writer),
        cmocka_unit_test(test_duplicates_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
