// The persistent RNN kernels (rnn.c, SN_VK_RNN_PERSIST=1): ONE dispatch runs all nsteps
// timesteps of a layer (forward, or backward from the top step), each step being the
// per-step kernel's body unchanged (sn_rnn_step_main: the same math, reduction order,
// saved state and outputs), with a grid-wide barrier through device memory between
// steps, instead of a dispatch and a pipeline barrier per step.
//
// Included after a step body (rnn_{lstm,gru}_step{,_bwd}_body.glsl) that was included
// with SN_RNN_PERSIST, `main` renamed sn_rnn_step_main and SN_BUF_COHERENT = coherent:
// every F32/SnV4 access is coherent, since a step reads what other workgroups wrote in
// the step before (h_{t-1}, dG_{t+1}) in this same dispatch, which a non-coherent
// per-SM cache could serve stale.
//
// Vulkan does not promise that the workgroups of one dispatch run at the same time, and
// one waiting for a workgroup that has not started would wait forever. So every wait is
// bounded (ppc.spin polls of the counter, far beyond any wait among resident
// workgroups); a wait that runs out sets the abort word, so that every other waiter
// leaves at once and late starters at their first barrier, and stores the workgroup
// count in host-visible fail word 0, which the backend turns into an error once the run
// has finished (sn_vk_fail_word in vk.h). Never a hang, never silent wrong numbers.
//
// CPU drivers: llvmpipe (lavapipe) silently ends every loop of a shader invocation once
// the invocation has run 65535 loop iterations in all (its "loop limiter"), which a
// whole sequence in one invocation can reach: a loop at the end that must run twice
// tells whether this invocation's loops were cut short, and fail word 1 reports it.
#extension GL_KHR_memory_scope_semantics : require // atomicLoad

// the steps' parameter blocks, in execution order
layout(buffer_reference, std430, buffer_reference_align = 8) readonly buffer SnPersistArgs { SnRnnP p[]; };
// sync.v[0]: arrivals (each workgroup adds 1 at each step barrier), v[1]: abort; zeroed by
// the host before the dispatch. fail.v[0], v[1]: the host-visible fail words.
layout(buffer_reference, std430, buffer_reference_align = 4) coherent volatile buffer SnPersistSync { uint v[]; };
layout(push_constant) uniform PPC {
    SnPersistArgs args;
    SnPersistSync sync, fail;
    int nsteps;
    uint spin;
} ppc;

shared bool sn_persist_abort;

uint sn_persist_load(uint i) {
    // an atomic load: a compiler may hoist a plain (even volatile) load out of the poll
    // loop and drop the loop (lavapipe's LLVM does)
    return atomicLoad(ppc.sync.v[i], gl_ScopeDevice, gl_StorageSemanticsBuffer, gl_SemanticsRelaxed);
}

void main() {
    const uint nwg = gl_NumWorkGroups.x;
    for (int s = 0; s < ppc.nsteps; s++) {
        pc = ppc.args.p[s];
        sn_rnn_step_main();
        if (s + 1 == ppc.nsteps) break;
        // the grid barrier: this workgroup's writes of step s made visible, then it
        // arrives; the last arrival of step s brings the counter to (s+1)*nwg
        memoryBarrierBuffer();
        barrier();
        if (gl_LocalInvocationIndex == 0u) {
            const uint target = uint(s + 1) * nwg;
            atomicAdd(ppc.sync.v[0], 1u);
            bool ok = false;
            for (uint i = 0u; i < ppc.spin; i++) {
                if (sn_persist_load(0u) >= target) {
                    ok = true;
                    break;
                }
                if (sn_persist_load(1u) != 0u) break;
            }
            if (!ok) {
                atomicExchange(ppc.sync.v[1], 1u);
                ppc.fail.v[0] = nwg;
            }
            sn_persist_abort = !ok;
            memoryBarrierBuffer();
        }
        barrier();
        if (sn_persist_abort) return;
    }
    // the loop-limiter probe (above): 2 iterations, a count no compiler can fold
    uint probe = 0u;
    for (int i = 0; i < 2 + min(ppc.nsteps, 0); i++) probe++;
    if (probe != 2u) ppc.fail.v[1] = 1u;
}
