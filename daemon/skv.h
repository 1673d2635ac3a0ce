/* skv.h - a session's KV cache as the engine sees it (eng_kv), kept in
 * memstore: what prefill, ask and resume use.  Prefix ed_skv_.
 *
 * Layout of positions, per layer kind:
 *   global layers   [0, base)        full blocks in LMDB, read from the map
 *                                    (f16 blocks zero-copy, others decoded
 *                                    once and cached)
 *                   [base, n_pos)    in memory ("pend"), written by steps
 *   window layers   the last window + n_batch positions, in rings; saved
 *                   as the session's tail so that a resume is exact.
 * base is a multiple of the session's block size B.  Summaries (per
 * channel min, max and mean of every complete block's keys, f16, as
 * eng_kv_ops.summary gives them) are read in place from the session's
 * summary pack in LMDB, copied at open for blocks stored after it, and
 * computed for new blocks at commit (the same bits: engine and memstore
 * round them alike); the keys' codes likewise, read when first asked
 * for.
 *
 * Nothing reaches LMDB until ed_skv_save(): a cache opened for a question
 * is an overlay over the stored session that is simply closed afterwards.
 *
 * Ownership: ed_skv_open() returns an eng_kv owned by the caller, freed
 * with eng_kv_close(); it borrows the model and the daemon's store (which
 * must outlive it) and holds a read transaction between steps' first
 * block read and the next save or close.  One thread drives it (the
 * worker); views may come from the engine's pool threads.  A cache
 * closed unsaved leaves its stored blocks' summaries and codes to skv.c's
 * one slot, which the next open of that session, its stored KV
 * unchanged, takes instead of reading them again (a second question);
 * ed_skv_forget() frees the slot (engramd's exit).
 */
#ifndef ENGRAM_ED_SKV_H
#define ENGRAM_ED_SKV_H

#include <stdint.h>
#include <stddef.h>

#include "engine.h"

/* Opens the stored KV of session id (as ms_session_head has it) for model
 * m: n_pos = the session's KV length.  n_batch is the eng_fwd's.  The
 * keys' codes (eng_kv_ops.codes) are found on the codes op's first call,
 * not here: they are 3.6 times the summaries (230 MB at 1.2M tokens for
 * the default model, a third of a second from a cold disk here) and only
 * a question past sparse_scan_max uses them; those the session's summary
 * pack holds are read in place from the map, the rest copied.  Fails (message in err) if
 * the session's geometry or fingerprint is not the model's, or if it
 * holds KV without a matching tail. */
int ed_skv_open(int64_t id, const eng_model *m, uint32_t n_batch,
    eng_kv **out, char *err, size_t errlen);

/* Makes positions [stored length, n_pos) durable: the new blocks of the
 * global layers and the window layers' tail, in one LMDB transaction
 * (ms_session_commit).  tokens[i] is the id at position first + i, for
 * every position from first to n_pos; first must be at or before the
 * start of the last stored block and n_pos - window (MS_EINVAL).
 * checkpoint: keep the tail also as the checkpoint of this prefix, from
 * which another session starts (ms_session_adopt); for a model without
 * window layers, whose blocks are its whole state, a one-token record
 * that only marks the prefix.  Afterwards the stored length is n_pos. */
int ed_skv_save(eng_kv *kv, const int32_t *tokens, uint64_t first,
    int checkpoint, char *err, size_t errlen);

/* Faults in the map's pages of the summaries read in place and, with
 * codes, reads the keys' codes now, as a question's first codes op would
 * (those the pack holds in place, the rest copied), faulting in those in
 * place: a first question at 1.2M tokens spent ~40 ms faulting the
 * codes.  For warm.c, before anyone asks. */
int ed_skv_warm(eng_kv *kv, int codes);

/* Where a read of a stored block failed (its checksum, a record cut
 * short): the first such failure of kv, said for the user in buf (n
 * bytes), and its memstore code; 0 (buf untouched) if none.  The engine
 * sees only ENG_EIO. */
int ed_skv_failure(const eng_kv *kv, char *buf, size_t n);

/* Frees what the last unsaved cache left for the next open (its
 * session's summaries and codes): before the store closes. */
void ed_skv_forget(void);

/* The stored length (positions durable in LMDB). */
uint64_t ed_skv_stored(const eng_kv *kv);

/* The most positions a question may scan (eng_sparse_params.scan_max)
 * on this session: no limit for f16 blocks, read in place; a q8 or q4
 * session decodes every block it reads, and a step cannot drop them, so
 * as many as the decoded-block budget holds. */
uint32_t ed_skv_scan_max(const eng_kv *kv);

#endif
