/* job.c — batch job files: everything `nas search` flags can say, in YAML or
 * JSON, read into a plain runs_job struct.
 *
 * Why libyaml's document API and a table of fields rather than a schema
 * library: every error must name the key and the line it sits on, and a
 * typo must never be ignored. The parser keeps each node's line; the table
 * says, per key, its type, its range and where it lands in the struct. JSON
 * files are checked by jansson first (its syntax errors are the clearer) and
 * then read through the same libyaml path, since JSON is valid YAML flow
 * syntax: one walker, one set of messages.
 */
#include "runs/runs.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

void runs_job_default(runs_job *j)
{
    memset(j, 0, sizeof *j);
    j->kind = RUNS_JOB_SEARCH;
    j->seed = 1;
    snprintf(j->data, sizeof j->data, "mnist");
    j->max_width = 1.0;
    j->stages = 4;
    j->min_side = 4;
    snprintf(j->strategy, sizeof j->strategy, "evolution");
    j->population = 16;
    j->sample = 4;
    j->mutations = 1;
    j->rl_lr = 0.05;
    j->rl_entropy = 0.01;
    j->rl_baseline_decay = 0.9;
    j->w = -0.07;
    j->epochs = 1;
    j->subset = 2000;
    j->batch = 64;
    j->lr = 0.05;
    snprintf(j->meter, sizeof j->meter, "auto");
    j->cal_samples = 40;
    j->cal_repeats = 5;
    j->cal_folds = 5;
    j->cal_min_seconds = 1.0;
    j->cal_passes = 2;
    j->cal_timeout = 600;
    snprintf(j->db, sizeof j->db, "runs.db");
    snprintf(j->export_dir, sizeof j->export_dir, "out");
    j->final_top = 1;
    j->final_epochs = 5;
    j->final_batch = 64;
    j->final_lr = 0.1;
}

/* ---- the table of keys ---------------------------------------------------- */

typedef enum { F_INT, F_LONG, F_U64, F_DOUBLE, F_STR, F_CHOICE_STR, F_CHOICE_IDX, F_BOOL } ftype;

typedef struct {
    const char *section;   /* NULL: top level */
    const char *key;
    ftype type;
    size_t off, size;
    double lo, hi;
    const char *choices;   /* "a|b|c" for the choice types */
    const char *only_for;  /* strategy kind the key belongs to, or NULL */
} field;

#define OFF(m) offsetof(runs_job, m), sizeof(((runs_job *)0)->m)

static const field fields[] = {
    {NULL, "job", F_CHOICE_IDX, OFF(kind), 0, 0, "search|calibrate", NULL},
    {NULL, "name", F_STR, OFF(name), 0, 0, NULL, NULL},
    {NULL, "seed", F_U64, OFF(seed), 0, 9.2e18, NULL, NULL},
    {NULL, "threads", F_INT, OFF(threads), 0, 1024, NULL, NULL},
    {"data", "set", F_CHOICE_STR, 0, 0, 0, 0, "mnist|fashion-mnist|idx|cifar10", NULL},
    {"data", "dir", F_STR, 0, 0, 0, 0, NULL, NULL},
    {"data", "val_count", F_INT, OFF(val_count), 0, 1e7, NULL, NULL},
    {"data", "test_limit", F_INT, OFF(test_limit), 0, 1e7, NULL, NULL},
    {"space", "resolution", F_INT, OFF(resolution), 8, 1024, NULL, NULL},
    {"space", "max_width", F_DOUBLE, OFF(max_width), 0.1, 4.0, NULL, NULL},
    {"space", "stages", F_INT, OFF(stages), 1, 7, NULL, NULL},
    {"space", "min_side", F_INT, OFF(min_side), 1, 64, NULL, NULL},
    {"space", "scale_resolution", F_BOOL, OFF(scale_resolution), 0, 1, NULL, NULL},
    {"strategy", "kind", F_CHOICE_STR, OFF(strategy), 0, 0, "evolution|rl|random", NULL},
    {"strategy", "population", F_INT, OFF(population), 2, 100000, NULL, "evolution"},
    {"strategy", "sample", F_INT, OFF(sample), 1, 100000, NULL, "evolution"},
    {"strategy", "mutations", F_INT, OFF(mutations), 1, 64, NULL, "evolution"},
    {"strategy", "lr", F_DOUBLE, OFF(rl_lr), 1e-6, 10, NULL, "rl"},
    {"strategy", "entropy", F_DOUBLE, OFF(rl_entropy), 0, 10, NULL, "rl"},
    {"strategy", "baseline_decay", F_DOUBLE, OFF(rl_baseline_decay), 0, 1, NULL, "rl"},
    {"objective", "target_mj", F_DOUBLE, OFF(target_mj), 1e-6, 1e9, NULL, NULL},
    {"objective", "target_ms", F_DOUBLE, OFF(target_ms), 1e-6, 1e9, NULL, NULL},
    {"objective", "w", F_DOUBLE, OFF(w), -2, 0, NULL, NULL},
    {"objective", "constraint", F_CHOICE_IDX, OFF(hard), 0, 0, "soft|hard", NULL},
    {"budget", "joules", F_DOUBLE, OFF(budget_joules), 0, 1e12, NULL, NULL},
    {"budget", "evals", F_LONG, OFF(budget_evals), 0, 1e9, NULL, NULL},
    {"budget", "seconds", F_DOUBLE, OFF(budget_seconds), 0, 1e9, NULL, NULL},
    {"proxy", "epochs", F_INT, OFF(epochs), 1, 1000, NULL, NULL},
    {"proxy", "subset", F_INT, OFF(subset), 0, 1e7, NULL, NULL},
    {"proxy", "batch", F_INT, OFF(batch), 1, 4096, NULL, NULL},
    {"proxy", "lr", F_DOUBLE, OFF(lr), 1e-6, 10, NULL, NULL},
    {"meter", "kind", F_CHOICE_STR, OFF(meter), 0, 0, "auto|rapl|perf|nvml|model", NULL},
    {"meter", "watts_per_core", F_DOUBLE, OFF(watts_per_core), 0.1, 1000, NULL, NULL},
    {"calibrate", "samples", F_INT, OFF(cal_samples), 4, 100000, NULL, NULL},
    {"calibrate", "repeats", F_INT, OFF(cal_repeats), 1, 1000, NULL, NULL},
    {"calibrate", "folds", F_INT, OFF(cal_folds), 2, 20, NULL, NULL},
    {"calibrate", "min_seconds", F_DOUBLE, OFF(cal_min_seconds), 0, 600, NULL, NULL},
    {"calibrate", "command", F_STR, OFF(cal_command), 0, 0, NULL, NULL},
    {"calibrate", "passes", F_INT, OFF(cal_passes), 1, 3, NULL, NULL},
    {"calibrate", "latency_stat", F_CHOICE_IDX, OFF(cal_latency_stat), 0, 0, "p10|median", NULL},
    {"calibrate", "timeout", F_DOUBLE, OFF(cal_timeout), 0, 86400, NULL, NULL},
    {"output", "db", F_STR, OFF(db), 0, 0, NULL, NULL},
    {"output", "export", F_STR, OFF(export_dir), 0, 0, NULL, NULL},
    {"final", "top", F_INT, OFF(final_top), 0, 16, NULL, NULL},
    {"final", "epochs", F_INT, OFF(final_epochs), 1, 1000, NULL, NULL},
    {"final", "batch", F_INT, OFF(final_batch), 1, 4096, NULL, NULL},
    {"final", "subset", F_LONG, OFF(final_subset), 0, 1e8, NULL, NULL},
    {"final", "lr", F_DOUBLE, OFF(final_lr), 1e-6, 10, NULL, NULL},
};
#define N_FIELDS (int)(sizeof fields / sizeof fields[0])
/* data.set and data.dir are parse-only slots, composed into job->data. */
#define F_DATA_SET 4
#define F_DATA_DIR 5

static const char *const sections[] = {"data", "space", "strategy", "objective", "budget",
                                       "proxy", "meter", "calibrate", "output", "final"};
#define N_SECTIONS (int)(sizeof sections / sizeof sections[0])

typedef struct {
    const char *where;
    yaml_document_t *doc;
    runs_job *job;
    int line[N_FIELDS];            /* where each key was set; 0: not set */
    char data_set[32], data_dir[512];
    nas_err *err;
} parse_ctx;

static int line_of(const yaml_node_t *n)
{
    return (int)n->start_mark.line + 1;
}

static const char *node_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:  return "a mapping";
    case YAML_SEQUENCE_NODE: return "a list";
    default:                 return "a value";
    }
}

/* "data.set" or "seed" */
static void key_name(const field *f, char *buf, size_t n)
{
    if (f->section)
        snprintf(buf, n, "%s.%s", f->section, f->key);
    else
        snprintf(buf, n, "%s", f->key);
}

static nas_status bad(parse_ctx *c, const yaml_node_t *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static nas_status bad(parse_ctx *c, const yaml_node_t *at, const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return nas_errf(c->err, NAS_EINVAL, "%s:%d: %s", c->where, line_of(at), msg);
}

static int is_null_scalar(const yaml_node_t *v)
{
    if (v->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *s = (const char *)v->data.scalar.value;
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static nas_status set_field(parse_ctx *c, int fi, const yaml_node_t *v)
{
    const field *f = &fields[fi];
    char name[64];
    key_name(f, name, sizeof name);
    if (v->type != YAML_SCALAR_NODE)
        return bad(c, v, "%s: expected a single value, got %s", name, node_kind(v));
    const char *s = (const char *)v->data.scalar.value;
    int quoted = v->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
    if (is_null_scalar(v))
        return bad(c, v, "%s: no value given", name);
    char *base = (char *)c->job;
    int numeric = f->type == F_INT || f->type == F_LONG || f->type == F_U64 || f->type == F_DOUBLE;
    if (numeric && quoted)
        return bad(c, v, "%s: expected a number, got the string \"%s\"", name, s);
    switch (f->type) {
    case F_INT:
    case F_LONG:
    case F_U64: {
        char *end;
        errno = 0;
        long long x = strtoll(s, &end, 10);
        if (errno == ERANGE || *end || end == s)
            return bad(c, v, "%s: expected a whole number, got '%s'", name, s);
        if ((double)x < f->lo || (double)x > f->hi)
            return bad(c, v, "%s: %s is out of range (%.15g..%.15g)", name, s, f->lo, f->hi);
        if (f->type == F_INT)
            *(int *)(base + f->off) = (int)x;
        else if (f->type == F_LONG)
            *(long *)(base + f->off) = (long)x;
        else
            *(uint64_t *)(base + f->off) = (uint64_t)x;
        break;
    }
    case F_DOUBLE: {
        char *end;
        errno = 0;
        double x = strtod(s, &end);
        if (errno == ERANGE || *end || end == s || !isfinite(x))
            return bad(c, v, "%s: expected a number, got '%s'", name, s);
        if (x < f->lo || x > f->hi)
            return bad(c, v, "%s: %s is out of range (%g..%g)", name, s, f->lo, f->hi);
        *(double *)(base + f->off) = x;
        break;
    }
    case F_BOOL: {
        int b = -1;
        if (!quoted && (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")))
            b = 1;
        else if (!quoted && (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")))
            b = 0;
        if (b < 0)
            return bad(c, v, "%s: expected true or false, got '%s'", name, s);
        *(int *)(base + f->off) = b;
        break;
    }
    case F_STR:
    case F_CHOICE_STR:
    case F_CHOICE_IDX: {
        if (f->type != F_STR) {
            int idx = -1, i = 0;
            const char *p = f->choices;
            size_t sl = strlen(s);
            while (p && *p) {
                const char *bar = strchr(p, '|');
                size_t n = bar ? (size_t)(bar - p) : strlen(p);
                if (n == sl && !strncmp(p, s, n)) {
                    idx = i;
                    break;
                }
                i++;
                p = bar ? bar + 1 : NULL;
            }
            if (idx < 0)
                return bad(c, v, "%s: '%s' is not one of %s", name, s, f->choices);
            if (f->type == F_CHOICE_IDX) {
                *(int *)(base + f->off) = idx;   /* runs_job_kind and hard are ints */
                break;
            }
        }
        char *dst;
        size_t cap;
        if (fi == F_DATA_SET) {
            dst = c->data_set;
            cap = sizeof c->data_set;
        } else if (fi == F_DATA_DIR) {
            dst = c->data_dir;
            cap = sizeof c->data_dir;
        } else {
            dst = base + f->off;
            cap = f->size;
        }
        if (strlen(s) >= cap)
            return bad(c, v, "%s: longer than %zu characters", name, cap - 1);
        if (!*s)
            return bad(c, v, "%s: empty", name);
        snprintf(dst, cap, "%s", s);
        break;
    }
    }
    c->line[fi] = line_of(v);
    return NAS_OK;
}

/* Lists the keys a section takes, for the unknown-key message. */
static void known_keys(const char *section, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < N_FIELDS && used < n; i++)
        if ((section == NULL) == (fields[i].section == NULL) &&
            (!section || !strcmp(section, fields[i].section)))
            used += snprintf(buf + used, n - used, "%s%s", used ? ", " : "", fields[i].key);
    if (!section)
        for (int i = 0; i < N_SECTIONS && used < n; i++)
            used += snprintf(buf + used, n - used, ", %s", sections[i]);
}

static nas_status walk_mapping(parse_ctx *c, const yaml_node_t *map, const char *section)
{
    if (map->type != YAML_MAPPING_NODE)
        return bad(c, map, "%s: expected a mapping of keys, got %s", section ? section : "job",
                   node_kind(map));
    nas_status st = NAS_OK;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start;
         p < map->data.mapping.pairs.top && !st; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        if (!k || !v)
            return nas_errf(c->err, NAS_EINVAL, "%s: malformed document", c->where);
        if (k->type != YAML_SCALAR_NODE)
            return bad(c, k, "a key must be a plain name, not %s", node_kind(k));
        const char *key = (const char *)k->data.scalar.value;
        /* Duplicate keys: YAML forbids them, libyaml lets them through. */
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *qk = yaml_document_get_node(c->doc, q->key);
            if (qk && qk->type == YAML_SCALAR_NODE && !strcmp((char *)qk->data.scalar.value, key))
                return bad(c, k, "%s%s%s: given twice (first on line %d)", section ? section : "",
                           section ? "." : "", key, line_of(qk));
        }
        if (!section) {
            int is_section = 0;
            for (int i = 0; i < N_SECTIONS; i++)
                if (!strcmp(key, sections[i]))
                    is_section = 1;
            if (is_section) {
                st = walk_mapping(c, v, key);
                continue;
            }
        }
        int fi = -1;
        for (int i = 0; i < N_FIELDS; i++)
            if ((section == NULL) == (fields[i].section == NULL) &&
                (!section || !strcmp(section, fields[i].section)) && !strcmp(key, fields[i].key))
                fi = i;
        if (fi < 0) {
            char known[600];
            known_keys(section, known, sizeof known);
            return bad(c, k, "unknown key '%s%s%s' (%s takes: %s)", section ? section : "",
                       section ? "." : "", key, section ? section : "a job", known);
        }
        st = set_field(c, fi, v);
    }
    return st;
}

static int field_index(const char *section, const char *key)
{
    for (int i = 0; i < N_FIELDS; i++)
        if (fields[i].section && !strcmp(fields[i].section, section) && !strcmp(fields[i].key, key))
            return i;
    return -1;
}

/* Checks that concern more than one key; messages name the later line. */
static nas_status cross_check(parse_ctx *c)
{
    runs_job *j = c->job;
    int l_mj = c->line[field_index("objective", "target_mj")];
    int l_ms = c->line[field_index("objective", "target_ms")];
    if (l_mj && l_ms)
        return nas_errf(c->err, NAS_EINVAL,
                        "%s:%d: objective: give target_mj or target_ms, not both (other on line %d)",
                        c->where, l_mj > l_ms ? l_mj : l_ms, l_mj > l_ms ? l_ms : l_mj);
    if (j->kind == RUNS_JOB_SEARCH && !l_mj && !l_ms)
        return nas_errf(c->err, NAS_EINVAL,
                        "%s: objective: a search job needs objective.target_mj or "
                        "objective.target_ms", c->where);
    int l_sample = c->line[field_index("strategy", "sample")];
    if (j->sample > j->population)
        return nas_errf(c->err, NAS_EINVAL,
                        "%s:%d: strategy.sample: %d is larger than strategy.population (%d)",
                        c->where, l_sample ? l_sample : c->line[field_index("strategy", "population")],
                        j->sample, j->population);
    for (int i = 0; i < N_FIELDS; i++)
        if (fields[i].only_for && c->line[i] && strcmp(fields[i].only_for, j->strategy) != 0)
            return nas_errf(c->err, NAS_EINVAL,
                            "%s:%d: strategy.%s: only for strategy kind %s (this job's is %s)",
                            c->where, c->line[i], fields[i].key, fields[i].only_for, j->strategy);
    /* data: a set and, where it needs one, a folder. */
    int l_set = c->line[F_DATA_SET], l_dir = c->line[F_DATA_DIR];
    const char *set = c->data_set[0] ? c->data_set : "mnist";
    /* mnist and fashion-mnist have homes of their own (data/, Debian's package) */
    int needs_dir = strcmp(set, "mnist") != 0 && strcmp(set, "fashion-mnist") != 0;
    if (needs_dir && !c->data_dir[0])
        return nas_errf(c->err, NAS_EINVAL, "%s:%d: data.set: %s needs data.dir (its folder)",
                        c->where, l_set, set);
    if (l_set || l_dir) {
        const char *loader = !strcmp(set, "cifar10") ? "cifar10" : "idx";
        if (!c->data_dir[0])
            snprintf(j->data, sizeof j->data, "%s", set);
        else if (snprintf(j->data, sizeof j->data, "%s:%s", loader, c->data_dir) >=
                 (int)sizeof j->data)
            return nas_errf(c->err, NAS_EINVAL, "%s:%d: data.dir: too long", c->where, l_dir);
    }
    return NAS_OK;
}

nas_status runs_job_parse(const char *text, size_t len, const char *where, runs_job *job,
                          nas_err *err)
{
    runs_job_default(job);
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r'))
        i++;
    if (i < len && text[i] == '{') {
        json_error_t je;
        json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        if (!root)
            return nas_errf(err, NAS_EINVAL, "%s:%d: %s", where, je.line, je.text);
        json_decref(root);
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser))
        return nas_errf(err, NAS_ENOMEM, "%s: out of memory", where);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        nas_status st = nas_errf(err, NAS_EINVAL, "%s:%zu: %s%s%s", where,
                                 parser.problem_mark.line + 1,
                                 parser.problem ? parser.problem : "malformed YAML",
                                 parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return st;
    }
    nas_status st = NAS_OK;
    parse_ctx c = {.where = where, .doc = &doc, .job = job, .err = err};
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root) {
        st = nas_errf(err, NAS_EINVAL, "%s: empty job file", where);
        goto cleanup;
    }
    if ((st = walk_mapping(&c, root, NULL)))
        goto cleanup;
    st = cross_check(&c);
cleanup:
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return st;
}

nas_status runs_job_load(const char *path, runs_job *job, nas_err *err)
{
    char *text = NULL;
    size_t len = 0;
    nas_status st = nas_read_file(path, &text, &len, err);
    if (st) {
        runs_job_default(job);
        return st;
    }
    st = runs_job_parse(text, len, path, job, err);
    nas_free(text);
    return st;
}

char *runs_job_to_json(const runs_job *j)
{
    json_t *o = json_pack(
        "{s:s, s:s, s:I, s:i,"
        " s:{s:s, s:i, s:i},"
        " s:{s:i, s:f, s:i, s:i, s:b},"
        " s:{s:s, s:i, s:i, s:i, s:f, s:f, s:f},"
        " s:{s:f, s:f, s:f, s:s},"
        " s:{s:f, s:I, s:f},"
        " s:{s:i, s:i, s:i, s:f},"
        " s:{s:s, s:f},"
        " s:{s:i, s:i, s:i, s:f, s:s, s:i, s:s, s:f},"
        " s:{s:s, s:s}}",
        "job", j->kind == RUNS_JOB_CALIBRATE ? "calibrate" : "search", "name", j->name, "seed",
        (json_int_t)j->seed, "threads", j->threads,
        "data", "spec", j->data, "val_count", j->val_count, "test_limit", j->test_limit,
        "space", "resolution", j->resolution, "max_width", j->max_width, "stages", j->stages,
        "min_side", j->min_side, "scale_resolution", j->scale_resolution,
        "strategy", "kind", j->strategy, "population", j->population, "sample", j->sample,
        "mutations", j->mutations, "lr", j->rl_lr, "entropy", j->rl_entropy, "baseline_decay",
        j->rl_baseline_decay,
        "objective", "target_mj", j->target_mj, "target_ms", j->target_ms, "w", j->w,
        "constraint", j->hard ? "hard" : "soft",
        "budget", "joules", j->budget_joules, "evals", (json_int_t)j->budget_evals, "seconds",
        j->budget_seconds,
        "proxy", "epochs", j->epochs, "subset", j->subset, "batch", j->batch, "lr", j->lr,
        "meter", "kind", j->meter, "watts_per_core", j->watts_per_core,
        "calibrate", "samples", j->cal_samples, "repeats", j->cal_repeats, "folds", j->cal_folds,
        "min_seconds", j->cal_min_seconds, "command", j->cal_command, "passes", j->cal_passes,
        "latency_stat", j->cal_latency_stat ? "median" : "p10", "timeout", j->cal_timeout,
        "output", "db", j->db, "export", j->export_dir);
    if (!o)
        return NULL;
    json_object_set_new(o, "final", json_pack("{s:i, s:i, s:i, s:I, s:f}", "top", j->final_top, "epochs",
                                              j->final_epochs, "batch", j->final_batch, "subset",
                                              (json_int_t)j->final_subset, "lr", j->final_lr));
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!s)
        return NULL;
    char *out = nas_strdup(s);
    free(s);
    return out;
}
