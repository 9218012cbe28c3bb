/* strategy.c — the one face of the three strategies: ask for a genome, tell its
 * reward back, in any order and with many in flight; and the whole state as
 * JSON, so that a restored strategy proposes exactly what the saved one would
 * have. Exactness rests on three things: every random draw comes from the
 * strategy's own PCG32 (saved as its 64-bit state and stream), reals are
 * written with 17 significant digits (jansson's default, which round-trips a
 * double), and tickets still in flight are saved with what they need at tell.
 */
#include "search/internal.h"

#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATE_VERSION 1

const char *search_kind_name(search_kind k)
{
    switch (k) {
    case SEARCH_EVOLUTION: return "evolution";
    case SEARCH_RL:        return "rl";
    case SEARCH_RANDOM:    return "random";
    }
    return "?";
}

int search_kind_from_name(const char *s)
{
    if (!s)
        return -1;
    if (!strcmp(s, "evolution") || !strcmp(s, "evo"))
        return SEARCH_EVOLUTION;
    if (!strcmp(s, "rl") || !strcmp(s, "reinforce") || !strcmp(s, "ppo"))
        return SEARCH_RL;
    if (!strcmp(s, "random"))
        return SEARCH_RANDOM;
    return -1;
}

void search_opts_default(search_opts *o, search_kind kind, long budget_evals)
{
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->seed = 1;
    o->population = 100;
    o->sample_size = 25;
    if (budget_evals > 0) {
        long p = budget_evals / 8;
        o->population = (int)(p < 8 ? 8 : p > 100 ? 100 : p);
        o->sample_size = o->population / 4 < 2 ? 2 : o->population / 4;
    }
    o->n_mutations = 1;
    /* Tuned on the synthetic objectives of tests/test_search.c (hidden target
     * genome, 24 genes of 2-6 choices, 300 evaluations). */
    o->lr = 0.15;
    o->baseline_decay = 0.9;
    o->entropy_coef = 0.002;
    o->batch = 1;
    o->ppo_epochs = 0;
    o->ppo_clip = 0.2;
}

static nas_status check_opts(const search_opts *o, nas_err *err)
{
    if (o->kind != SEARCH_EVOLUTION && o->kind != SEARCH_RL && o->kind != SEARCH_RANDOM)
        return nas_errf(err, NAS_EINVAL, "strategy: unknown kind %d", (int)o->kind);
    if (o->kind == SEARCH_EVOLUTION) {
        if (o->population < 2 || o->population > 1000000)
            return nas_errf(err, NAS_EINVAL, "strategy: population %d (2..1000000 allowed)", o->population);
        if (o->sample_size < 1 || o->sample_size > o->population)
            return nas_errf(err, NAS_EINVAL, "strategy: sample_size %d (1..population=%d allowed)",
                            o->sample_size, o->population);
        if (o->n_mutations < 1)
            return nas_errf(err, NAS_EINVAL, "strategy: n_mutations %d (>= 1 allowed)", o->n_mutations);
    }
    if (o->kind == SEARCH_RL) {
        if (!(o->lr > 0 && o->lr < 100))
            return nas_errf(err, NAS_EINVAL, "strategy: lr %g (0 < lr < 100 allowed)", o->lr);
        if (!(o->baseline_decay >= 0 && o->baseline_decay < 1))
            return nas_errf(err, NAS_EINVAL, "strategy: baseline_decay %g (0 <= d < 1 allowed)",
                            o->baseline_decay);
        if (!(o->entropy_coef >= 0 && o->entropy_coef < 10))
            return nas_errf(err, NAS_EINVAL, "strategy: entropy_coef %g (0..10 allowed)", o->entropy_coef);
        if (o->batch < 1 || o->batch > 100000)
            return nas_errf(err, NAS_EINVAL, "strategy: batch %d (1..100000 allowed)", o->batch);
        if (o->ppo_epochs < 0 || o->ppo_epochs > 1000)
            return nas_errf(err, NAS_EINVAL, "strategy: ppo_epochs %d (0..1000 allowed)", o->ppo_epochs);
        if (o->ppo_epochs > 0 && !(o->ppo_clip > 0 && o->ppo_clip < 1))
            return nas_errf(err, NAS_EINVAL, "strategy: ppo_clip %g (0 < clip < 1 allowed)", o->ppo_clip);
    }
    return NAS_OK;
}

void search_strategy_free(search_strategy *s)
{
    if (!s)
        return;
    nas_free(s->pending);
    nas_free(s->pop_g);
    nas_free(s->pop_r);
    nas_free(s->pop_c);
    nas_free(s->logits);
    nas_free(s->buf_adv);
    nas_free(s);
}

/* Everything but the pending table is sized here, once. */
static nas_status strategy_alloc(const search_space *space, const search_opts *opts, search_strategy **out,
                                 nas_err *err)
{
    *out = NULL;
    nas_status st = check_opts(opts, err);
    if (st)
        return st;
    if (space->n_genes < 1 || space->n_genes > SPACE_MAX_GENES)
        return nas_errf(err, NAS_EINVAL, "strategy: space has %d genes", space->n_genes);
    search_strategy *s = nas_calloc(1, sizeof *s);
    if (!s)
        return nas_errf(err, NAS_ENOMEM, "strategy: out of memory");
    s->space = *space;
    s->opts = *opts;
    nas_pcg32_seed(&s->rng, opts->seed, 0x5ea7c4ULL);
    if (opts->kind == SEARCH_EVOLUTION) {
        s->pop_g = nas_calloc((size_t)opts->population, sizeof *s->pop_g);
        s->pop_r = nas_calloc((size_t)opts->population, sizeof *s->pop_r);
        s->pop_c = nas_calloc((size_t)opts->population, sizeof *s->pop_c);
        if (!s->pop_g || !s->pop_r || !s->pop_c)
            goto oom;
    }
    if (opts->kind == SEARCH_RL) {
        s->off[0] = 0;
        for (int i = 0; i < space->n_genes; i++)
            s->off[i + 1] = s->off[i] + space->card[i];
        s->n_logits = s->off[space->n_genes];
        /* logits, gradient and probabilities in one block */
        s->logits = nas_calloc((size_t)s->n_logits * 3, sizeof(double));
        /* the batch: advantages and old log-probabilities, then genomes (doubles first, for alignment) */
        s->buf_adv = nas_calloc((size_t)opts->batch, sizeof *s->buf_g + 2 * sizeof(double));
        if (!s->logits || !s->buf_adv)
            goto oom;
        s->grad = s->logits + s->n_logits;
        s->prob = s->grad + s->n_logits;
        s->buf_logp = s->buf_adv + opts->batch;
        s->buf_g = (space_genome *)(s->buf_logp + opts->batch);
    }
    *out = s;
    return NAS_OK;
oom:
    search_strategy_free(s);
    return nas_errf(err, NAS_ENOMEM, "strategy: out of memory");
}

nas_status search_strategy_new(const search_space *space, const search_opts *opts, search_strategy **out,
                               nas_err *err)
{
    return strategy_alloc(space, opts, out, err);
}

search_kind search_strategy_kind(const search_strategy *s) { return s->opts.kind; }
int search_strategy_pending(const search_strategy *s) { return s->n_pending; }

static int pending_push(search_strategy *s, search_pending_t p)
{
    if (s->n_pending == s->cap_pending) {
        int cap = s->cap_pending ? s->cap_pending * 2 : 16;
        search_pending_t *np = nas_realloc(s->pending, (size_t)cap * sizeof *np);
        if (!np)
            return -1;
        s->pending = np;
        s->cap_pending = cap;
    }
    s->pending[s->n_pending++] = p;
    return 0;
}

nas_status search_ask(search_strategy *s, space_genome *g, long *ticket, nas_err *err)
{
    /* Make room first, so a failed allocation leaves the strategy (and its rng) untouched. */
    if (s->n_pending == s->cap_pending) {
        search_pending_t dummy = {0};
        if (pending_push(s, dummy))
            return nas_errf(err, NAS_ENOMEM, "strategy: out of memory");
        s->n_pending--;
    }
    search_pending_t p = {.ticket = s->next_ticket};
    switch (s->opts.kind) {
    case SEARCH_RANDOM:
        search_space_sample(&s->space, &s->rng, g);
        break;
    case SEARCH_EVOLUTION:
        search_evo_ask(s, g, &p.random_start);
        break;
    case SEARCH_RL:
        search_rl_sample(s, g, &p.logp);
        break;
    }
    pending_push(s, p);
    *ticket = s->next_ticket++;
    return NAS_OK;
}

nas_status search_reserve(search_strategy *s, long *ticket, nas_err *err)
{
    search_pending_t p = {.ticket = s->next_ticket, .random_start = SEARCH_PROMOTION};
    if (pending_push(s, p))
        return nas_errf(err, NAS_ENOMEM, "strategy: out of memory");
    *ticket = s->next_ticket++;
    return NAS_OK;
}

nas_status search_tell(search_strategy *s, long ticket, const space_genome *g, double reward, double cost,
                       search_tell_kind kind, nas_err *err)
{
    int i = 0;
    while (i < s->n_pending && s->pending[i].ticket != ticket)
        i++;
    if (i == s->n_pending)
        return nas_errf(err, NAS_EINVAL, "strategy: ticket %ld was not asked or was told already", ticket);
    if (g->n != s->space.n_genes)
        return nas_errf(err, NAS_EINVAL, "strategy: ticket %ld: genome has %d genes, space has %d", ticket,
                        g->n, s->space.n_genes);
    if (kind != SEARCH_TELL_OK || !isfinite(reward))
        reward = 0.0;
    search_pending_t p = s->pending[i];
    /* keep the table in ask order: saved state must not depend on tell order beyond what it is */
    memmove(s->pending + i, s->pending + i + 1, (size_t)(s->n_pending - i - 1) * sizeof *s->pending);
    s->n_pending--;
    if (p.random_start == SEARCH_PROMOTION)   /* a rung above the first: not comparable with its results */
        return NAS_OK;
    s->told++;
    switch (s->opts.kind) {
    case SEARCH_RANDOM:
        break;
    case SEARCH_EVOLUTION:
        search_evo_tell(s, g, reward, cost, p.random_start, kind);
        break;
    case SEARCH_RL:
        search_rl_tell(s, g, reward, p.logp);
        break;
    }
    return NAS_OK;
}

/* ---- JSON helpers ------------------------------------------------------- */

json_t *search_json_u64(uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%016" PRIx64, v);
    return json_string(buf);
}

int search_json_get_u64(const json_t *j, uint64_t *v)
{
    const char *s = json_string_value(j);
    if (!s || !*s || strlen(s) > 16)
        return -1;
    char *end;
    unsigned long long x = strtoull(s, &end, 16);
    if (*end)
        return -1;
    *v = x;
    return 0;
}

json_t *search_json_genome(const space_genome *g)
{
    json_t *a = json_array();
    int bad = 0;
    for (int i = 0; i < g->n; i++)
        search_json_append(a, json_integer(g->g[i]), &bad);
    if (bad) {
        json_decref(a);
        return NULL;
    }
    return a;
}

nas_status search_json_get_genome(const json_t *j, const search_space *space, space_genome *g,
                                  const char *field, nas_err *err)
{
    memset(g, 0, sizeof *g);
    if (!json_is_array(j) || (int)json_array_size(j) != space->n_genes)
        return nas_errf(err, NAS_EINVAL, "%s: expected an array of %d genes", field, space->n_genes);
    g->n = space->n_genes;
    for (int i = 0; i < g->n; i++) {
        json_t *v = json_array_get(j, (size_t)i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= space->card[i])
            return nas_errf(err, NAS_EINVAL, "%s: gene %d out of range (0..%d)", field, i, space->card[i] - 1);
        g->g[i] = (uint8_t)json_integer_value(v);
    }
    return NAS_OK;
}

json_t *search_json_space(const search_space *space)
{
    json_t *a = json_array();
    int bad = 0;
    for (int i = 0; i < space->n_genes; i++)
        search_json_append(a, json_integer(space->card[i]), &bad);
    if (bad) {
        json_decref(a);
        return NULL;
    }
    return a;
}

nas_status search_json_check_space(const json_t *j, const search_space *space, nas_err *err)
{
    int ok = json_is_array(j) && (int)json_array_size(j) == space->n_genes;
    for (int i = 0; ok && i < space->n_genes; i++)
        ok = json_integer_value(json_array_get(j, (size_t)i)) == space->card[i];
    if (!ok)
        return nas_errf(err, NAS_EINVAL,
                        "space: the saved state was made for another genome (cardinalities differ)");
    return NAS_OK;
}

json_t *search_json_num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

int search_json_get_num(const json_t *obj, const char *key, double *v)
{
    json_t *j = json_object_get(obj, key);
    if (json_is_null(j)) {
        *v = NAN;
        return 0;
    }
    if (!json_is_number(j))
        return -1;
    *v = json_number_value(j);
    return 0;
}

char *search_json_dump(json_t *root)
{
    if (!root)
        return NULL;
    char *s = json_dumps(root, JSON_COMPACT);
    if (!s)
        return NULL;
    char *d = nas_strdup(s);
    nas_free(s);
    return d;
}

/* ---- save and load ------------------------------------------------------ */

void search_json_set(json_t *obj, const char *key, json_t *v, int *bad)
{
    if (json_object_set_new(obj, key, v) != 0)
        *bad = 1;
}

void search_json_append(json_t *arr, json_t *v, int *bad)
{
    if (json_array_append_new(arr, v) != 0)
        *bad = 1;
}

json_t *search_strategy_to_json(const search_strategy *s)
{
    const search_opts *o = &s->opts;
    int bad = 0;
    json_t *root = json_object(), *opts = json_object(), *pend = json_array();
    search_json_set(root, "version", json_integer(STATE_VERSION), &bad);
    search_json_set(root, "kind", json_string(search_kind_name(o->kind)), &bad);
    search_json_set(root, "space", search_json_space(&s->space), &bad);
    search_json_set(opts, "seed", search_json_u64(o->seed), &bad);
    search_json_set(opts, "population", json_integer(o->population), &bad);
    search_json_set(opts, "sample_size", json_integer(o->sample_size), &bad);
    search_json_set(opts, "n_mutations", json_integer(o->n_mutations), &bad);
    search_json_set(opts, "lr", json_real(o->lr), &bad);
    search_json_set(opts, "baseline_decay", json_real(o->baseline_decay), &bad);
    search_json_set(opts, "entropy_coef", json_real(o->entropy_coef), &bad);
    search_json_set(opts, "batch", json_integer(o->batch), &bad);
    search_json_set(opts, "ppo_epochs", json_integer(o->ppo_epochs), &bad);
    search_json_set(opts, "ppo_clip", json_real(o->ppo_clip), &bad);
    search_json_set(root, "opts", opts, &bad);
    search_json_set(root, "rng_state", search_json_u64(s->rng.state), &bad);
    search_json_set(root, "rng_inc", search_json_u64(s->rng.inc), &bad);
    search_json_set(root, "next_ticket", json_integer(s->next_ticket), &bad);
    search_json_set(root, "told", json_integer(s->told), &bad);
    for (int i = 0; i < s->n_pending; i++)
        search_json_append(pend, json_pack("[I,i,f]", (json_int_t)s->pending[i].ticket, s->pending[i].random_start,
                                           s->pending[i].logp), &bad);
    search_json_set(root, "pending", pend, &bad);
    if (o->kind == SEARCH_EVOLUTION) {
        json_t *pop = json_array();
        for (int i = 0; i < s->pop_n; i++) {
            int k = (s->pop_head + i) % o->population;   /* oldest first */
            json_t *c = isfinite(s->pop_c[k]) ? json_real(s->pop_c[k]) : json_null();
            search_json_append(pop, json_pack("[o,f,o]", search_json_genome(&s->pop_g[k]), s->pop_r[k], c), &bad);
        }
        search_json_set(root, "population", pop, &bad);
        search_json_set(root, "start_pending", json_integer(s->start_pending), &bad);
    }
    if (o->kind == SEARCH_RL) {
        json_t *lg = json_array(), *buf = json_array();
        for (int i = 0; i < s->n_logits; i++)
            search_json_append(lg, json_real(s->logits[i]), &bad);
        for (int i = 0; i < s->buf_n; i++)
            search_json_append(buf, json_pack("[o,f,f]", search_json_genome(&s->buf_g[i]), s->buf_adv[i],
                                              s->buf_logp[i]), &bad);
        search_json_set(root, "logits", lg, &bad);
        search_json_set(root, "batch_buffer", buf, &bad);
        search_json_set(root, "baseline", json_real(s->baseline), &bad);
        search_json_set(root, "reward_var", json_real(s->reward_var), &bad);
        search_json_set(root, "have_baseline", json_integer(s->have_baseline), &bad);
    }
    if (bad) {
        json_decref(root);
        return NULL;
    }
    return root;
}

char *search_strategy_save(const search_strategy *s)
{
    json_t *root = search_strategy_to_json(s);
    char *out = search_json_dump(root);
    json_decref(root);
    return out;
}

/* The last part of a field's name ("opts.lr" -> "lr"): its key in its object. */
static const char *key_of(const char *field)
{
    const char *dot = strrchr(field, '.');
    return dot ? dot + 1 : field;
}

nas_status search_json_int(const json_t *obj, const char *what, const char *field, long lo, long hi, long *v,
                           nas_err *err)
{
    json_t *j = json_object_get(obj, key_of(field));
    if (!json_is_integer(j))
        return nas_errf(err, NAS_EINVAL, "%s: field '%s' missing or not an integer", what, field);
    json_int_t x = json_integer_value(j);
    if (x < lo || x > hi)
        return nas_errf(err, NAS_EINVAL, "%s: field '%s': %lld is out of range (%ld to %ld)", what, field,
                        (long long)x, lo, hi);
    *v = (long)x;
    return NAS_OK;
}

nas_status search_json_real(const json_t *obj, const char *what, const char *field, double lo, double hi,
                            int null_ok, double *v, nas_err *err)
{
    json_t *j = json_object_get(obj, key_of(field));
    if (null_ok && json_is_null(j)) {
        *v = NAN;
        return NAS_OK;
    }
    if (!json_is_number(j))
        return nas_errf(err, NAS_EINVAL, "%s: field '%s' missing or not a number%s", what, field,
                        null_ok ? " (or null)" : "");
    double x = json_number_value(j);
    if (!(x >= lo && x <= hi))
        return nas_errf(err, NAS_EINVAL, "%s: field '%s': %g is out of range (%g to %g)", what, field, x, lo, hi);
    *v = x;
    return NAS_OK;
}

#define WHAT "strategy state"
#define BAD(field) do { st = nas_errf(err, NAS_EINVAL, WHAT ": field '%s' missing or invalid", field); \
                        goto cleanup; } while (0)
#define TRY(x) do { if ((st = (x)) != NAS_OK) goto cleanup; } while (0)

/* The options as saved. Those of another kind than the state's are not used,
 * but they are saved again, so they must be numbers JSON can hold. */
static nas_status opts_from_json(const json_t *jo, search_opts *o, nas_err *err)
{
    nas_status st = NAS_OK;
    long v;
    if (!json_is_object(jo))
        BAD("opts");
    if (search_json_get_u64(json_object_get(jo, "seed"), &o->seed))
        BAD("opts.seed");
    TRY(search_json_int(jo, WHAT, "opts.population", 0, 1000000, &v, err));
    o->population = (int)v;
    TRY(search_json_int(jo, WHAT, "opts.sample_size", 0, 1000000, &v, err));
    o->sample_size = (int)v;
    TRY(search_json_int(jo, WHAT, "opts.n_mutations", 0, SPACE_MAX_GENES, &v, err));
    o->n_mutations = (int)v;
    TRY(search_json_int(jo, WHAT, "opts.batch", 1, 100000, &v, err));
    o->batch = (int)v;
    TRY(search_json_int(jo, WHAT, "opts.ppo_epochs", 0, 1000, &v, err));
    o->ppo_epochs = (int)v;
    TRY(search_json_real(jo, WHAT, "opts.lr", -DBL_MAX, DBL_MAX, 0, &o->lr, err));
    TRY(search_json_real(jo, WHAT, "opts.baseline_decay", -DBL_MAX, DBL_MAX, 0, &o->baseline_decay, err));
    TRY(search_json_real(jo, WHAT, "opts.entropy_coef", -DBL_MAX, DBL_MAX, 0, &o->entropy_coef, err));
    TRY(search_json_real(jo, WHAT, "opts.ppo_clip", -DBL_MAX, DBL_MAX, 0, &o->ppo_clip, err));
cleanup:
    return st;
}

/* Tickets asked and not told, in ask order (so strictly increasing, which
 * also rules out one ticket twice). */
static nas_status pending_from_json(const json_t *pend, search_strategy *s, nas_err *err)
{
    nas_status st = NAS_OK;
    if (!json_is_array(pend) || (long)json_array_size(pend) > s->next_ticket)
        BAD("pending");
    for (size_t i = 0; i < json_array_size(pend); i++) {
        json_int_t t;
        int rs;
        double lp;
        if (json_unpack(json_array_get(pend, i), "[I,i,F]", &t, &rs, &lp) || t < 0 || t >= s->next_ticket ||
            (s->n_pending > 0 && t <= s->pending[s->n_pending - 1].ticket) || rs < SEARCH_PROMOTION || rs > 1 ||
            !(lp <= 0 && lp >= -DBL_MAX))
            BAD("pending");
        search_pending_t p = {.ticket = (long)t, .random_start = rs, .logp = lp};
        if (pending_push(s, p)) {
            st = nas_errf(err, NAS_ENOMEM, WHAT ": out of memory");
            goto cleanup;
        }
    }
cleanup:
    return st;
}

static nas_status evo_from_json(const json_t *root, const search_space *space, search_strategy *s, nas_err *err)
{
    nas_status st = NAS_OK;
    long v;
    json_t *pop = json_object_get(root, "population");
    if (!json_is_array(pop) || (int)json_array_size(pop) > s->opts.population)
        BAD("population");
    for (size_t i = 0; i < json_array_size(pop); i++) {
        json_t *jg, *jc = NULL;
        double r, c = NAN;
        /* [genome, reward, cost or null]; states saved before costs have no third */
        json_t *m = json_array_get(pop, i);
        if (json_unpack(m, json_array_size(m) == 2 ? "[o,F!]" : "[o,F,o!]", &jg, &r, &jc) || !isfinite(r))
            BAD("population");
        if (jc && !json_is_null(jc)) {
            c = json_number_value(jc);
            if (!json_is_number(jc) || !isfinite(c) || c < 0)
                BAD("population");
        }
        TRY(search_json_get_genome(jg, space, &s->pop_g[i], WHAT ": population", err));
        s->pop_r[i] = r;
        s->pop_c[i] = c;
    }
    s->pop_n = (int)json_array_size(pop);
    s->pop_head = 0;
    TRY(search_json_int(root, WHAT, "start_pending", 0, s->n_pending, &v, err));
    s->start_pending = (int)v;
cleanup:
    return st;
}

/* Logits beyond this are a policy certain to the last bit many times over;
 * bounded, its updates stay finite and it saves again. */
#define RL_MAX_LOGIT 1e9

static nas_status rl_from_json(const json_t *root, const search_space *space, search_strategy *s, nas_err *err)
{
    nas_status st = NAS_OK;
    long v;
    json_t *lg = json_object_get(root, "logits"), *buf = json_object_get(root, "batch_buffer");
    if (!json_is_array(lg) || (int)json_array_size(lg) != s->n_logits)
        BAD("logits");
    for (int i = 0; i < s->n_logits; i++) {
        json_t *x = json_array_get(lg, (size_t)i);
        if (!json_is_number(x) || !(fabs(json_number_value(x)) <= RL_MAX_LOGIT))
            return nas_errf(err, NAS_EINVAL, WHAT ": field 'logits[%d]': not a number in -%g to %g", i, RL_MAX_LOGIT,
                            RL_MAX_LOGIT);
        s->logits[i] = json_number_value(x);
    }
    if (!json_is_array(buf) || (int)json_array_size(buf) >= s->opts.batch)
        BAD("batch_buffer");
    for (size_t i = 0; i < json_array_size(buf); i++) {
        json_t *jg;
        if (json_unpack(json_array_get(buf, i), "[o,F,F]", &jg, &s->buf_adv[i], &s->buf_logp[i]) ||
            !isfinite(s->buf_adv[i]) || !(s->buf_logp[i] <= 0 && s->buf_logp[i] >= -DBL_MAX))
            BAD("batch_buffer");
        TRY(search_json_get_genome(jg, space, &s->buf_g[i], WHAT ": batch_buffer", err));
    }
    s->buf_n = (int)json_array_size(buf);
    TRY(search_json_real(root, WHAT, "baseline", -DBL_MAX, DBL_MAX, 0, &s->baseline, err));
    TRY(search_json_real(root, WHAT, "reward_var", 0, DBL_MAX, 0, &s->reward_var, err));
    TRY(search_json_int(root, WHAT, "have_baseline", 0, 1, &v, err));
    s->have_baseline = (int)v;
cleanup:
    return st;
}

nas_status search_strategy_from_json(const search_space *space, const json_t *root, search_strategy **out,
                                     nas_err *err)
{
    nas_status st = NAS_OK;
    search_strategy *s = NULL;
    *out = NULL;
    if (!json_is_object(root))
        return nas_errf(err, NAS_EINVAL, WHAT ": not a JSON object");
    long v;
    if (search_json_int(root, WHAT, "version", STATE_VERSION, STATE_VERSION, &v, NULL))
        return nas_errf(err, NAS_EINVAL, WHAT ": field 'version' must be %d", STATE_VERSION);
    int kind = search_kind_from_name(json_string_value(json_object_get(root, "kind")));
    if (kind < 0)
        return nas_errf(err, NAS_EINVAL, WHAT ": field 'kind' must be evolution, rl or random");
    if ((st = search_json_check_space(json_object_get(root, "space"), space, err)))
        return st;
    search_opts o;
    search_opts_default(&o, (search_kind)kind, 0);
    TRY(opts_from_json(json_object_get(root, "opts"), &o, err));
    TRY(strategy_alloc(space, &o, &s, err));
    if (search_json_get_u64(json_object_get(root, "rng_state"), &s->rng.state)) BAD("rng_state");
    if (search_json_get_u64(json_object_get(root, "rng_inc"), &s->rng.inc) || !(s->rng.inc & 1)) BAD("rng_inc");
    TRY(search_json_int(root, WHAT, "next_ticket", 0, SEARCH_MAX_TICKETS, &s->next_ticket, err));
    TRY(search_json_int(root, WHAT, "told", 0, s->next_ticket, &s->told, err));
    TRY(pending_from_json(json_object_get(root, "pending"), s, err));
    if (o.kind == SEARCH_EVOLUTION)
        TRY(evo_from_json(root, space, s, err));
    if (o.kind == SEARCH_RL)
        TRY(rl_from_json(root, space, s, err));
    *out = s;
    s = NULL;
cleanup:
    search_strategy_free(s);
    return st;
}

nas_status search_strategy_load(const search_space *space, const char *json, search_strategy **out,
                                nas_err *err)
{
    json_error_t je;
    *out = NULL;
    nas_status st;
    json_t *root = nas_json_load(json, json ? strlen(json) : 0, 0, &je, &st);
    if (!root)
        return nas_errf(err, st, "strategy state: line %d: %s", je.line, je.text);
    st = search_strategy_from_json(space, root, out, err);
    json_decref(root);
    return st;
}
