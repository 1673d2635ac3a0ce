/* ms_synth.h - synthetic K/V with realistic statistics for memstore's tests
 * and bench (no engine yet): keys with per-channel offsets and a few
 * outlier channels (RMS-normed, RoPE'd keys look like this: KIVI, Fig. 2),
 * values near-Gaussian with per-token scale.  Deterministic (seeded). */
#ifndef ENGRAM_MS_SYNTH_H
#define ENGRAM_MS_SYNTH_H

#include <math.h>
#include <stdint.h>
#include <stddef.h>

typedef struct ms_synth {
	uint64_t s;
} ms_synth;

static inline uint64_t ms_synth_u64(ms_synth *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline float ms_synth_unif(ms_synth *r)	/* (0, 1) */
{
	return ((float)(ms_synth_u64(r) >> 40) + 0.5f) / 16777216.0f;
}

static inline float ms_synth_gauss(ms_synth *r)
{
	float u = ms_synth_unif(r), v = ms_synth_unif(r);
	return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

/* Fills k and v, each [sections][t][d] (sections = layers * heads).
 * Channel c of section s has offset mu and scale sd fixed by (seed, s, c):
 * 1 in 32 channels is an outlier (scale 8..16, offset up to +-20). */
static inline void ms_synth_kv(uint64_t seed, size_t sections, size_t t,
			       size_t d, float *k, float *v)
{
	for (size_t s = 0; s < sections; s++) {
		ms_synth ch = { seed * 1000003u + s };
		ms_synth r = { (seed ^ 0x5bd1e995u) * 7919u + s };
		for (size_t c = 0; c < d; c++) {
			float mu = 0.5f * ms_synth_gauss(&ch);
			float sd = 0.5f + ms_synth_unif(&ch);
			if (ms_synth_u64(&ch) % 32 == 0) {
				sd *= 8.0f + 8.0f * ms_synth_unif(&ch);
				mu = 40.0f * (ms_synth_unif(&ch) - 0.5f);
			}
			for (size_t i = 0; i < t; i++)
				k[(s * t + i) * d + c] = mu + sd * ms_synth_gauss(&r);
		}
		for (size_t i = 0; i < t; i++) {
			float ts = 0.25f + 1.5f * ms_synth_unif(&r);
			for (size_t c = 0; c < d; c++)
				v[(s * t + i) * d + c] = ts * ms_synth_gauss(&r);
		}
	}
}

#endif
