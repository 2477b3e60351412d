/* Counter-based RNG: every draw is a hash of (seed, epoch, index, stream, k),
 * so results never depend on which thread asks first. */
#include "sinter/data.h"

uint64_t sn_hash64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

uint64_t sn_rng_key(uint64_t seed, uint64_t epoch, uint64_t index, uint64_t stream) {
    uint64_t h = sn_hash64(seed ^ 0x5851f42d4c957f2dull);
    h = sn_hash64(h ^ epoch);
    h = sn_hash64(h ^ (index * 0xd1342543de82ef95ull));
    return sn_hash64(h ^ (stream + 0x2545f4914f6cdd1dull));
}

uint64_t sn_rng_u64(uint64_t key, uint64_t k) { return sn_hash64(key ^ sn_hash64(k)); }

double sn_rng_uniform(uint64_t key, uint64_t k) {
    return (double)(sn_rng_u64(key, k) >> 11) * (1.0 / 9007199254740992.0);
}
