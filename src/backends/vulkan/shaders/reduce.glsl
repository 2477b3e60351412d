// Float sums carried as an unevaluated pair (s, c): s + c holds the sum to about twice f32's
// precision (TwoSum error terms; `precise` keeps the compiler from simplifying them away).
// Deterministic when the order of the adds is fixed.
void sn_pair_add(inout float s, inout float c, float x) {
    precise float t = s + x;
    precise float bp = t - s;
    precise float e = (s - (t - bp)) + (x - bp);
    s = t;
    c += e;
}
// (s, c) += (s2, c2)
void sn_pair_merge(inout float s, inout float c, float s2, float c2) {
    sn_pair_add(s, c, s2);
    c += c2;
}
