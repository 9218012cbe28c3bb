/* internal.h — what the files of search/ share and nobody else sees: the
 * strategy's insides (one struct for the three kinds; only the fields of its
 * kind are used) and the JSON helpers for saving state exactly. */
#ifndef SEARCH_INTERNAL_H
#define SEARCH_INTERNAL_H

#include "search/search.h"

#include <jansson.h>

typedef struct {
    long ticket;
    int random_start;     /* evolution: one of the random samples that fill the population;
                             SEARCH_PROMOTION: a ticket search_reserve gave (it learns nothing from it) */
    double logp;          /* rl: log-probability under the policy when asked (PPO's old policy) */
} search_pending_t;

#define SEARCH_PROMOTION -1

/* A ticket for a promotion (multi-fidelity): pending like an asked one, so
 * the loop's accounting and resume treat it alike, but the strategy learns
 * nothing when it is told (its rung is not comparable with rung 0). */
NAS_MUST_USE nas_status search_reserve(search_strategy *s, long *ticket, nas_err *err);

struct search_strategy {
    search_space space;
    search_opts opts;
    nas_pcg32 rng;
    long next_ticket;
    long told;
    int n_pending, cap_pending;
    search_pending_t *pending;

    /* evolution: a ring of the `population` most recent members, oldest at head */
    int pop_n, pop_head, start_pending;
    space_genome *pop_g;
    double *pop_r, *pop_c;   /* reward, and cost (NAN: none; any unit, compared only among members) */

    /* rl: logits of every gene's choices in one array; gene g starts at off[g] */
    int n_logits;
    int off[SPACE_MAX_GENES + 1];
    double *logits;       /* n_logits */
    double *grad;         /* n_logits, scratch for one update */
    double *prob;         /* n_logits, scratch */
    double baseline, reward_var;
    int have_baseline;
    int buf_n;            /* results waiting for the next update (batch) */
    space_genome *buf_g;  /* batch entries */
    double *buf_adv, *buf_logp;
};

/* rl.c */
void search_rl_softmax(const search_strategy *s, double *prob);
double search_rl_logp(const search_strategy *s, const double *prob, const space_genome *g);
void search_rl_sample(search_strategy *s, space_genome *g, double *logp);
void search_rl_tell(search_strategy *s, const space_genome *g, double reward, double logp_old);

/* evolution.c */
void search_evo_ask(search_strategy *s, space_genome *g, int *random_start);
void search_evo_tell(search_strategy *s, const space_genome *g, double reward, double cost, int random_start,
                     search_tell_kind kind);

/* json helpers (strategy.c): uint64 as hex strings, genomes as arrays of ints */
json_t *search_json_u64(uint64_t v);
int search_json_get_u64(const json_t *j, uint64_t *v);
json_t *search_json_genome(const space_genome *g);
NAS_MUST_USE nas_status search_json_get_genome(const json_t *j, const search_space *space, space_genome *g,
                                               const char *field, nas_err *err);
json_t *search_json_space(const search_space *space);
NAS_MUST_USE nas_status search_json_check_space(const json_t *j, const search_space *space, nas_err *err);
/* Sets obj[key] to v, or appends v, taking its reference; a failure (v NULL
 * is one: jansson's answer to NaN, an infinity, text that is not UTF-8 or no
 * memory) sets *bad, so that a save fails as a whole instead of dropping a
 * key and writing a state that does not load back. */
void search_json_set(json_t *obj, const char *key, json_t *v, int *bad);
void search_json_append(json_t *arr, json_t *v, int *bad);
/* Readers of a saved state's fields, checked against [lo, hi]: `what` names
 * the state and `field` the field in the error ("opts.lr"; its last part is
 * the key in obj). A real may be null (read as NaN, as search_json_num writes
 * NaN) only where null_ok. */
NAS_MUST_USE nas_status search_json_int(const json_t *obj, const char *what, const char *field, long lo, long hi,
                                        long *v, nas_err *err);
NAS_MUST_USE nas_status search_json_real(const json_t *obj, const char *what, const char *field, double lo, double hi,
                                         int null_ok, double *v, nas_err *err);
/* Tickets (candidate ids) a saved state may reach: they are the run store's
 * int sequence numbers and index the caller's tables. */
#define SEARCH_MAX_TICKETS 1000000000L
/* Reads a number field; NaN is stored as null. */
int search_json_get_num(const json_t *obj, const char *key, double *v);
json_t *search_json_num(double v);
/* json_dumps into nas_malloc'd memory (so callers nas_free it). */
char *search_json_dump(json_t *root);

/* strategy.c: the strategy as JSON, for embedding in the loop's state */
json_t *search_strategy_to_json(const search_strategy *s);
NAS_MUST_USE nas_status search_strategy_from_json(const search_space *space, const json_t *root,
                                                  search_strategy **out, nas_err *err);

#endif
