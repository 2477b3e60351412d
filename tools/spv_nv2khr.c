/* spv_nv2khr: rewrites a SPIR-V module from SPV_NV_cooperative_matrix to
 * SPV_KHR_cooperative_matrix, so shaders compile with the glslang that Debian 12 and
 * Ubuntu 22.04 ship (it knows GL_NV_cooperative_matrix, not GL_KHR_cooperative_matrix)
 * and still run on the drivers that expose only VK_KHR_cooperative_matrix (AMD, Intel).
 *
 *   spv_nv2khr in.spv out.spv
 *
 * The KHR matrix type has a "use" (A, B or accumulator) the NV type lacks: a type takes
 * the use of the operand place it has in OpCooperativeMatrixMulAddNV (its result and C:
 * accumulator), so the shader must give A, B and C distinct types; a type never
 * multiplied is an accumulator. Load/store take a layout constant (0 row-major,
 * 1 column-major) before the stride, where NV has a boolean after it. Opcodes and
 * operand orders: SPIRV-Headers' spirv.core.grammar.json. Built and run at build time
 * by CMakeLists.txt; tests/vulkan/test_spv_nv2khr.c includes this file with
 * SPV_NV2KHR_NO_MAIN to test the function. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    OP_EXTENSION = 10,
    OP_CAPABILITY = 17,
    OP_TYPE_BOOL = 20,
    OP_CONSTANT_TRUE = 41,
    OP_CONSTANT_FALSE = 42,
    OP_CONSTANT = 43,
    CAP_COOPMAT_NV = 5357,
    CAP_COOPMAT_KHR = 6022,
    OP_TYPE_COOPMAT_NV = 5358,
    OP_LOAD_NV = 5359,
    OP_STORE_NV = 5360,
    OP_MULADD_NV = 5361,
    OP_LENGTH_NV = 5362,
    OP_TYPE_COOPMAT_KHR = 4456,
    OP_LOAD_KHR = 4457,
    OP_STORE_KHR = 4458,
    OP_MULADD_KHR = 4459,
    OP_LENGTH_KHR = 4460,
    USE_A = 0,
    USE_B = 1,
    USE_ACC = 2,
    SPV_MAGIC = 0x07230203,
};

/* instructions whose words 1 and 2 are result type and result id, among those that can
 * define a matrix operand of the multiply: enough to find the operands' types */
static int typed_result(uint32_t op) {
    switch (op) {
    case 1:   /* OpUndef */
    case 44:  /* OpConstantComposite */
    case 61:  /* OpLoad */
    case 80:  /* OpCompositeConstruct */
    case 81:  /* OpCompositeExtract */
    case 82:  /* OpCompositeInsert */
    case 83:  /* OpCopyObject */
    case 127: /* OpFNegate */
    case 129: /* OpFAdd */
    case 131: /* OpFSub */
    case 133: /* OpFMul */
    case 136: /* OpFDiv */
    case 143: /* OpMatrixTimesScalar */
    case 169: /* OpSelect */
    case 245: /* OpPhi */
    case 115: /* OpFConvert */
    case OP_LOAD_NV:
    case OP_MULADD_NV: return 1;
    default: return 0;
    }
}

static void put_error(char *err, size_t len, const char *fmt, ...) {
    if (!err || !len) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, len, fmt, ap);
    va_end(ap);
}

/* Returns 0 and a malloc'ed module in *out (*nout words), or -1 with a message in err. */
int spv_nv2khr(const uint32_t *in, size_t n, uint32_t **out, size_t *nout, char *err, size_t errlen) {
    *out = NULL;
    *nout = 0;
    if (n < 5 || in[0] != SPV_MAGIC) {
        put_error(err, errlen, "not a SPIR-V module (magic %#x)", n ? (unsigned)in[0] : 0u);
        return -1;
    }
    const uint32_t bound = in[3];
    uint32_t *type_of = calloc(bound, sizeof *type_of); /* result id -> result type id */
    uint32_t *def = calloc(bound, sizeof *def);         /* result id -> word index of its instruction */
    int8_t *use = malloc(bound);                        /* NV matrix type id -> KHR use, -1 none yet */
    if (!type_of || !def || !use) {
        free(type_of), free(def), free(use);
        put_error(err, errlen, "out of memory (id bound %u)", bound);
        return -1;
    }
    memset(use, -1, bound);
    int rc = -1;
    size_t first_type = 0, nmat = 0, nls = 0;
    /* pass 1: definitions, result types, and every matrix type's place in a multiply */
    for (size_t i = 5; i < n;) {
        uint32_t wc = in[i] >> 16, op = in[i] & 0xffff;
        if (wc == 0 || i + wc > n) {
            put_error(err, errlen, "truncated instruction at word %u", (uint32_t)i);
            goto done;
        }
        if (typed_result(op) && wc >= 3 && in[i + 2] < bound) {
            type_of[in[i + 2]] = in[i + 1];
            def[in[i + 2]] = (uint32_t)i;
        } else if ((op == OP_CONSTANT_TRUE || op == OP_CONSTANT_FALSE || op == OP_CONSTANT) && wc >= 3 &&
                   in[i + 2] < bound) {
            def[in[i + 2]] = (uint32_t)i;
        }
        if (op == OP_TYPE_COOPMAT_NV) {
            if (wc != 6 || in[i + 1] >= bound) {
                put_error(err, errlen, "OpTypeCooperativeMatrixNV at word %u: unexpected length", (uint32_t)i);
                goto done;
            }
            if (!first_type) first_type = i;
            nmat++;
        }
        if (op == OP_LOAD_NV || op == OP_STORE_NV) nls++;
        if (op == OP_MULADD_NV) {
            if (wc != 6) {
                put_error(err, errlen, "OpCooperativeMatrixMulAddNV at word %u: unexpected length", (uint32_t)i);
                goto done;
            }
            const int place[4] = {USE_ACC, USE_A, USE_B, USE_ACC}; /* result type, then A, B, C */
            for (int k = 0; k < 4; k++) {
                uint32_t t = k == 0 ? in[i + 1] : in[i + 2 + k] < bound ? type_of[in[i + 2 + k]] : 0;
                if (!t || t >= bound) {
                    put_error(err, errlen, "cannot find the type of an operand of the multiply at word %u", (uint32_t)i);
                    goto done;
                }
                if (use[t] >= 0 && use[t] != place[k]) {
                    put_error(err, errlen,
                              "matrix type %%%u is used as two of A, B and C of a multiply: give each its own type "
                              "(different shapes or specialization constants)", t);
                    goto done;
                }
                use[t] = (int8_t)place[k];
            }
        }
        if (op == 5293 || (op >= 5366 && op <= 5369) || op == 5390) {
            /* ConvertNV and GL_NV_cooperative_matrix2's instructions have no KHR form */
            put_error(err, errlen, "opcode %u (an NV cooperative-matrix extension) has no KHR translation", op);
            goto done;
        }
        i += wc;
    }
    if (!nmat) {
        put_error(err, errlen, "no OpTypeCooperativeMatrixNV in the module");
        goto done;
    }
    /* the constants go right after the scope constant of the first matrix type (it
     * precedes every matrix type), of that constant's integer type */
    uint32_t scope = in[first_type + 3];
    if (scope >= bound || !def[scope] || (in[def[scope]] & 0xffff) != OP_CONSTANT) {
        put_error(err, errlen, "the scope of matrix type %%%u is not an OpConstant", in[first_type + 1]);
        goto done;
    }
    const size_t at = def[scope] + (in[def[scope]] >> 16);
    const uint32_t int_type = in[def[scope] + 1];
    const uint32_t k_use[3] = {bound, bound + 1, bound + 2}, k_layout[2] = {bound + 3, bound + 4};
    const uint32_t new_bound = bound + 5;
    /* worst case: 5 constants of 4 words, one more word per type, load and store, and
     * an extension name two words longer */
    size_t cap = n + 20 + nmat + nls + 2;
    uint32_t *o = malloc(cap * sizeof *o);
    if (!o) {
        put_error(err, errlen, "out of memory (%u words)", (uint32_t)cap);
        goto done;
    }
    size_t w = 0;
    memcpy(o, in, 5 * sizeof *o);
    o[3] = new_bound;
    w = 5;
    for (size_t i = 5; i < n;) {
        uint32_t wc = in[i] >> 16, op = in[i] & 0xffff;
        const uint32_t *s = in + i;
        if (op == OP_CAPABILITY && wc == 2 && s[1] == CAP_COOPMAT_NV) {
            o[w++] = s[0];
            o[w++] = CAP_COOPMAT_KHR;
        } else if (op == OP_EXTENSION && wc >= 2 && memchr(s + 1, 0, (wc - 1) * 4) &&
                   !strcmp((const char *)(s + 1), "SPV_NV_cooperative_matrix")) {
            static const char name[] = "SPV_KHR_cooperative_matrix";
            uint32_t nw = (uint32_t)(sizeof name + 3) / 4;
            o[w] = ((1 + nw) << 16) | OP_EXTENSION;
            memset(o + w + 1, 0, nw * 4);
            memcpy(o + w + 1, name, sizeof name);
            w += 1 + nw;
        } else if (op == OP_TYPE_COOPMAT_NV) {
            int u = use[s[1]] < 0 ? USE_ACC : use[s[1]];
            o[w++] = (7u << 16) | OP_TYPE_COOPMAT_KHR;
            memcpy(o + w, s + 1, 5 * sizeof *o); /* result, component type, scope, rows, columns */
            w += 5;
            o[w++] = k_use[u];
        } else if (op == OP_LOAD_NV || op == OP_STORE_NV) {
            /* NV: [type, result,] pointer, [object,] stride, column-major, memory operands */
            size_t pre = op == OP_LOAD_NV ? 3 : 2; /* operands before the stride */
            if (wc < pre + 3) {
                put_error(err, errlen, "cooperative matrix load/store at word %u: too short", (uint32_t)i);
                free(o);
                goto done;
            }
            uint32_t cm = s[pre + 2], cmop = cm < bound && def[cm] ? in[def[cm]] & 0xffff : 0;
            if (cmop != OP_CONSTANT_TRUE && cmop != OP_CONSTANT_FALSE) {
                put_error(err, errlen, "cooperative matrix load/store at word %u: column-major is not a constant "
                          "true/false", (uint32_t)i);
                free(o);
                goto done;
            }
            o[w++] = (wc << 16) | (op == OP_LOAD_NV ? OP_LOAD_KHR : OP_STORE_KHR);
            memcpy(o + w, s + 1, pre * sizeof *o);
            w += pre;
            o[w++] = k_layout[cmop == OP_CONSTANT_TRUE];
            o[w++] = s[pre + 1]; /* stride */
            memcpy(o + w, s + pre + 3, (wc - pre - 3) * sizeof *o);
            w += wc - pre - 3;
        } else if (op == OP_MULADD_NV || op == OP_LENGTH_NV) {
            /* same operands (float matrices need no Cooperative Matrix Operands) */
            o[w++] = (wc << 16) | (op == OP_MULADD_NV ? OP_MULADD_KHR : OP_LENGTH_KHR);
            memcpy(o + w, s + 1, (wc - 1) * sizeof *o);
            w += wc - 1;
        } else {
            memcpy(o + w, s, wc * sizeof *o);
            w += wc;
        }
        if (i + wc == at) { /* the new constants */
            const uint32_t val[5] = {USE_A, USE_B, USE_ACC, 0, 1};
            const uint32_t ids[5] = {k_use[0], k_use[1], k_use[2], k_layout[0], k_layout[1]};
            for (int k = 0; k < 5; k++) {
                o[w++] = (4u << 16) | OP_CONSTANT;
                o[w++] = int_type;
                o[w++] = ids[k];
                o[w++] = val[k];
            }
        }
        i += wc;
    }
    *out = o;
    *nout = w;
    rc = 0;
done:
    free(type_of);
    free(def);
    free(use);
    return rc;
}

#ifndef SPV_NV2KHR_NO_MAIN
static uint32_t *read_words(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint32_t *buf = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            uint32_t *nb = realloc(buf, cap * sizeof *buf);
            if (!nb) break;
            buf = nb;
        }
        size_t r = fread(buf + len, sizeof *buf, cap - len, f);
        len += r;
        if (r == 0) break;
    }
    fclose(f);
    *n = len;
    return buf;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: spv_nv2khr in.spv out.spv (SPV_NV_cooperative_matrix -> SPV_KHR_cooperative_matrix)\n");
        return 2;
    }
    size_t n = 0, nout = 0;
    uint32_t *in = read_words(argv[1], &n), *out = NULL;
    if (!in) {
        fprintf(stderr, "spv_nv2khr: cannot read %s\n", argv[1]);
        return 1;
    }
    char err[256];
    if (spv_nv2khr(in, n, &out, &nout, err, sizeof err) != 0) {
        fprintf(stderr, "spv_nv2khr: %s: %s\n", argv[1], err);
        free(in);
        return 1;
    }
    FILE *f = fopen(argv[2], "wb");
    int ok = f && fwrite(out, sizeof *out, nout, f) == nout;
    if (f && fclose(f) != 0) ok = 0;
    free(in);
    free(out);
    if (!ok) {
        fprintf(stderr, "spv_nv2khr: cannot write %s\n", argv[2]);
        remove(argv[2]);
        return 1;
    }
    return 0;
}
#endif
