/* The communicator and the data-parallel step without BatchNorm.
 * In-process: the group of one (no launcher: rank 0 of 1, no MPI), its collectives,
 * attaching it, and that a step with a group of one issues no all-reduce.
 * Under `mpirun -np 2` (this program re-runs itself as the two ranks): MPI sum, mean,
 * max (f32, f64), broadcast, barrier; and a tiny MLP trained by the step API
 * (sn_step_new_with) with 2 ranks x batch B equals one process with batch 2B (losses
 * and final weights within fp32 tolerance), with Adam and with SGD + global-norm
 * clipping, in one bucket and in many. Skipped (77) without mpirun or MPI. */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sinter/dist.h"
#include "sinter/nn.h"
#include "sn_test.h"

enum { F = 8, T = 3, H = 16, B = 2, STEPS = 5 };

/* ---- a tiny MLP over the frequency bins, as an sn_model ---- */

static sn_model *mlp_new(sn_backend *b) {
    sn_model *m = calloc(1, sizeof *m);
    m->ctx = sn_ctx_new();
    m->backend = b;
    m->cfg.freq_bins = F;
    int64_t shapes[4][2] = {{H, F}, {H, 0}, {F, H}, {F, 0}};
    const char *names[4] = {"l1.weight", "l1.bias", "l2.weight", "l2.bias"};
    int64_t total = 0;
    for (int i = 0; i < 4; i++) total += sn_align64(shapes[i][0] * (shapes[i][1] ? shapes[i][1] : 1));
    m->flat = sn_new_1d(m->ctx, total, SN_FLAG_PERSIST, "params");
    m->nflat = total;
    int64_t off = 0;
    for (int i = 0; i < 4; i++) {
        sn_tensor *t = sn_new_tensor(m->ctx, SN_F32, shapes[i][1] ? 2 : 1, shapes[i], SN_FLAG_PARAM, names[i]);
        sn_alias(t, m->flat, off);
        off += sn_align64(sn_nelem(t));
        m->nparams += sn_nelem(t);
        m->t[m->n] = t;
        m->trainable[m->n++] = true;
    }
    if (sn_ctx_alloc_persistent(m->ctx, b) != SN_OK) return NULL;
    for (int i = 0; i < 4; i++) { /* deterministic weights, the same in every process */
        int64_t n = sn_nelem(m->t[i]);
        float *v = malloc((size_t)n * sizeof *v);
        for (int64_t k = 0; k < n; k++) v[k] = 0.4f * sinf(1.3f * (float)k + 0.7f * (float)i);
        sn_tensor_set(m->t[i], v, n);
        free(v);
    }
    return m;
}

static sn_tensor *mlp_forward(sn_model *m, sn_tensor *x, void *user) {
    sn_ctx *c = m->ctx;
    int64_t rows[2] = {x->shape[0] * x->shape[2], F};
    sn_tensor *h = sn_reshape(c, x, 2, rows);
    h = sn_relu(c, sn_linear(c, h, m->t[0], m->t[1]));
    h = sn_linear(c, h, m->t[2], m->t[3]);
    return sn_reshape(c, h, 4, x->shape);
}

/* item k of the global batch of `step`: input and target [1,T,F] */
static void item(int step, int k, float *x, float *y) {
    for (int i = 0; i < T * F; i++) {
        x[i] = sinf(0.37f * (float)(i + 1) * (float)(k + 1) + (float)step);
        y[i] = 0.5f * cosf(0.11f * (float)(i * (k + 2)) - 0.3f * (float)step);
    }
}

/* trains STEPS steps of batch `batch` holding global items [first, first + batch);
 * loss[s] = this process's loss; flat = the final parameters */
static int train_mlp(sn_backend *b, const sn_optim_config *oc, int batch, int first, float *loss, float *flat,
                     int *buckets) {
    sn_model *m = mlp_new(b);
    sn_step *s = NULL;
    if (!m || sn_step_new_with(m, mlp_forward, NULL, b, NULL, batch, T, oc, &s) != SN_OK) {
        fprintf(stderr, "step: %s\n", sn_last_error());
        return 1;
    }
    if (buckets) *buckets = s->nbuckets;
    float *x = malloc(sizeof(float) * batch * T * F), *y = malloc(sizeof(float) * batch * T * F);
    for (int st = 0; st < STEPS; st++) {
        for (int k = 0; k < batch; k++) item(st, first + k, x + k * T * F, y + k * T * F);
        if (sn_step_run(s, x, y, 0.02f, &loss[st]) != SN_OK) {
            fprintf(stderr, "step %d: %s\n", st, sn_last_error());
            return 1;
        }
    }
    sn_tensor_get(m->flat, flat, m->nflat);
    free(x);
    free(y);
    sn_step_free(s);
    sn_model_free(m);
    return 0;
}

/* ---- the two ranks (under mpirun) ---- */

#define CHECK(cond, ...)                                           \
    do {                                                           \
        if (!(cond)) {                                             \
            fprintf(stderr, "rank %d: ", rank);                    \
            fprintf(stderr, __VA_ARGS__);                          \
            fprintf(stderr, "\n");                                 \
            return 1;                                              \
        }                                                          \
    } while (0)

static int mlp_case(sn_comm *c, int rank, const char *what, const sn_optim_config *oc, const char *bucket_mb,
                    bool many_buckets) {
    if (bucket_mb) setenv("SINTER_DP_BUCKET_MB", bucket_mb, 1);
    else unsetenv("SINTER_DP_BUCKET_MB");
    sn_backend *dp = sn_cpu_backend_new(1), *ref = sn_cpu_backend_new(1);
    CHECK(sn_comm_attach(c, dp) == SN_OK, "attach: %s", sn_last_error());
    float ld[STEPS], lr_[STEPS], fd[512] = {0}, fr[512] = {0}; /* the MLP's flat buffer: 384 */
    int nb = 0;
    CHECK(train_mlp(dp, oc, B, rank * B, ld, fd, &nb) == 0, "%s: data-parallel run failed", what);
    CHECK(train_mlp(ref, oc, 2 * B, 0, lr_, fr, NULL) == 0, "%s: reference run failed", what);
    CHECK(many_buckets ? nb > 1 : nb == 1, "%s: %d all-reduce buckets", what, nb);
    /* the global batch's loss is the mean of the ranks' losses */
    CHECK(sn_comm_allreduce(c, ld, ld, STEPS, SN_REDUCE_AVG, NULL) == SN_OK, "loss all-reduce");
    for (int s = 0; s < STEPS; s++)
        CHECK(fabsf(ld[s] - lr_[s]) <= 1e-5f * fabsf(lr_[s]) + 1e-7f, "%s: step %d loss %.9g (2 x batch %d) vs %.9g "
              "(batch %d)", what, s + 1, ld[s], B, lr_[s], 2 * B);
    float worst = 0;
    for (int i = 0; i < 512; i++) worst = fmaxf(worst, fabsf(fd[i] - fr[i]));
    CHECK(worst < 2e-6f, "%s: final weights differ by %.3g", what, worst);
    /* and the ranks hold the same model */
    float g[512];
    CHECK(sn_comm_allreduce(c, fd, g, 512, SN_REDUCE_MAX, NULL) == SN_OK, "weights max");
    for (int i = 0; i < 512; i++) CHECK(g[i] == fd[i], "%s: the ranks' weights diverged at %d", what, i);
    if (rank == 0) printf("%s: %d steps, %d bucket(s), losses equal, weights max |diff| %.3g\n", what, STEPS, nb, worst);
    sn_comm_attach(NULL, dp);
    sn_backend_free(dp);
    sn_backend_free(ref);
    return 0;
}

static int worker(void) {
    sn_comm *c = NULL;
    int rank = -1;
    CHECK(sn_dist_init(&c) == SN_OK, "sn_dist_init: %s", sn_last_error());
    rank = sn_comm_rank(c);
    CHECK(sn_comm_size(c) == 2 && !strcmp(sn_comm_name(c), "mpi"), "group: %d processes over %s", sn_comm_size(c),
          sn_comm_name(c));
    CHECK(sn_comm_local_size(c) == 2 && sn_comm_local_rank(c) == rank, "local rank %d of %d", sn_comm_local_rank(c),
          sn_comm_local_size(c));
    float v[3] = {(float)rank + 1, 10.0f * (float)rank, -1.0f}, r[3];
    CHECK(sn_comm_allreduce(c, v, r, 3, SN_REDUCE_SUM, NULL) == SN_OK && r[0] == 3 && r[1] == 10 && r[2] == -2, "sum");
    CHECK(sn_comm_allreduce(c, v, r, 3, SN_REDUCE_AVG, NULL) == SN_OK && r[0] == 1.5f && r[1] == 5, "mean");
    CHECK(sn_comm_allreduce(c, v, v, 3, SN_REDUCE_MAX, NULL) == SN_OK && v[0] == 2 && v[1] == 10, "max in place");
    double d[2] = {1e-17 * (rank + 1), 1.0};
    CHECK(c->coll.allreduce(c->coll.user, d, d, 2, true, NULL) == SN_OK && d[0] == 3e-17 && d[1] == 2.0, "f64 sum");
    char msg[32] = "";
    if (rank == 1) snprintf(msg, sizeof msg, "from rank one");
    CHECK(sn_comm_bcast(c, msg, sizeof msg, 1, NULL) == SN_OK && !strcmp(msg, "from rank one"), "bcast: '%s'", msg);
    CHECK(sn_comm_barrier(c) == SN_OK, "barrier");
    CHECK(sn_comm_bcast(c, msg, 1, 2, NULL) == SN_ERR_INVALID_ARG, "a bad root is refused");

    sn_optim_config adam, sgd;
    sn_optim_config_default(&adam);
    adam.lr = 0.02f;
    sn_optim_config_default(&sgd);
    sgd.kind = SN_OPTIM_SGD;
    sgd.momentum = 0.9f;
    sgd.grad_clip = 0.05f; /* small: the clipping is active */
    if (mlp_case(c, rank, "adam, one bucket", &adam, NULL, false)) return 1;
    if (mlp_case(c, rank, "adam, small buckets", &adam, "0.0001", true)) return 1;
    if (mlp_case(c, rank, "sgd + clip_grad_norm, buckets", &sgd, "0.0001", true)) return 1;
    if (rank == 0) printf("worker ok\n");
    sn_comm_free(c);
    return 0;
}

/* ---- in-process tests ---- */

static void test_group_of_one(void **state) {
    (void)state;
    sn_comm *c = NULL;
    SN_ASSERT_OK(sn_dist_init(&c));
    assert_int_equal(sn_comm_rank(c), 0);
    assert_int_equal(sn_comm_size(c), 1);
    assert_int_equal(sn_comm_local_size(c), 1);
    assert_string_equal(sn_comm_name(c), "local");
    float a[3] = {1, 2, 3}, b[3] = {0};
    SN_ASSERT_OK(sn_comm_allreduce(c, a, b, 3, SN_REDUCE_AVG, NULL));
    assert_true(b[0] == 1 && b[2] == 3);
    SN_ASSERT_OK(sn_comm_bcast(c, a, sizeof a, 0, NULL));
    SN_ASSERT_OK(sn_comm_barrier(c));
    assert_int_equal(sn_comm_allreduce(c, NULL, b, 3, SN_REDUCE_SUM, NULL), SN_ERR_INVALID_ARG);
    assert_int_equal(sn_comm_allreduce(c, a, b, 3, (sn_reduce_op)9, NULL), SN_ERR_INVALID_ARG);
    assert_int_equal(sn_comm_bcast(c, a, 4, 1, NULL), SN_ERR_INVALID_ARG);
    /* a group of one attached: the step is the plain one, no all-reduce node */
    sn_backend *b1 = sn_cpu_backend_new(1);
    SN_ASSERT_OK(sn_comm_attach(c, b1));
    assert_non_null(b1->coll);
    assert_int_equal(b1->coll->world, 1);
    sn_model *m = mlp_new(b1);
    sn_step *s = NULL;
    SN_ASSERT_OK(sn_step_new_with(m, mlp_forward, NULL, b1, NULL, B, T, NULL, &s));
    assert_int_equal(s->world, 1);
    assert_int_equal(s->nbuckets, 0);
    sn_step_free(s);
    sn_model_free(m);
    SN_ASSERT_OK(sn_comm_attach(NULL, b1));
    assert_null(b1->coll);
    sn_backend_free(b1);
    assert_int_equal(sn_comm_nccl_new(NULL, 0, NULL), sn_dist_have_nccl() ? SN_ERR_INVALID_ARG : SN_ERR_UNSUPPORTED);
    sn_comm_free(c);
}

static bool have_mpirun(void) { return sn_dist_have_mpi() && SN_MPIRUN[0] && access(SN_MPIRUN, X_OK) == 0; }

static void test_two_ranks(void **state) {
    (void)state;
    char self[600], log[64];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(n > 0);
    self[n] = 0;
    snprintf(log, sizeof log, "/tmp/sn_dist_step_%d.log", (int)getpid());
    pid_t pid = fork();
    if (pid == 0) {
        setenv("SN_DIST_WORKER", "1", 1);
        int o = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(o, 1), dup2(o, 2);
        alarm(120);
        execl(SN_MPIRUN, SN_MPIRUN, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", "2", self,
              (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    FILE *f = fopen(log, "r");
    char buf[8192] = "";
    size_t k = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[k] = 0;
    if (f) fclose(f);
    unlink(log);
    print_message("%s", buf);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_non_null(strstr(buf, "worker ok"));
}

int main(void) {
    if (getenv("SN_DIST_WORKER")) return worker();
    const char *ao = getenv("ASAN_OPTIONS");
    char asan[512];
    snprintf(asan, sizeof asan, "%s%sdetect_leaks=0", ao ? ao : "", ao && *ao ? ":" : "");
    setenv("ASAN_OPTIONS", asan, 1); /* Open MPI's allocations are not ours to report */
    setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
    const struct CMUnitTest one[] = {cmocka_unit_test(test_group_of_one)};
    int rc = cmocka_run_group_tests(one, NULL, NULL);
    if (rc != 0) return rc;
    if (!have_mpirun()) {
        printf("skipped the 2-process part: %s\n", sn_dist_have_mpi() ? "mpirun is not installed (Debian: openmpi-bin)"
                                                                     : "built without MPI (install libopenmpi-dev)");
        return 77;
    }
    const struct CMUnitTest two[] = {cmocka_unit_test(test_two_ranks)};
    return cmocka_run_group_tests(two, NULL, NULL);
}
