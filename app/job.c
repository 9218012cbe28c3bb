/* job.c — batch job files: everything `nas search` and `nas calibrate` flags
 * can say, in YAML or JSON, read into app_settings through the one table of
 * settings (app/settings.c).
 *
 * Why libyaml's document API: every error must name the key and the line it
 * sits on, and a typo must never be ignored. The parser keeps each node's
 * line; the table says, per key, its type, its range and where it lands.
 * JSON files are checked by jansson first (its syntax errors are the
 * clearer) and then read through the same libyaml path, since JSON is valid
 * YAML flow syntax: one walker, one set of messages.
 */
#include "app/app.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

nas_status app_setting_set_text(const app_setting *t, app_settings *s, const char *v, const char *who, nas_err *err);

#define MAX_ROWS 160

typedef struct {
    const char *where;
    yaml_document_t *doc;
    app_settings *s;
    int line[MAX_ROWS];            /* where each row was set; 0: not set */
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
static void key_name(const app_setting *t, char *buf, size_t n)
{
    if (t->section)
        snprintf(buf, n, "%s.%s", t->section, t->key);
    else
        snprintf(buf, n, "%s", t->key);
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

static nas_status set_field(parse_ctx *c, int ri, const yaml_node_t *v)
{
    const app_setting *t = app_setting_at(ri);
    char name[64];
    key_name(t, name, sizeof name);
    if (v->type != YAML_SCALAR_NODE)
        return bad(c, v, "%s: expected a single value, got %s", name, node_kind(v));
    const char *s = (const char *)v->data.scalar.value;
    int quoted = v->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
    if (is_null_scalar(v))
        return bad(c, v, "%s: no value given", name);
    if ((t->type == APP_LONG || t->type == APP_DBL) && quoted)
        return bad(c, v, "%s: expected a number, got the string \"%s\"", name, s);
    if (t->type == APP_BOOL && quoted)
        return bad(c, v, "%s: expected %s, got the string \"%s\"", name, t->choices ? t->choices : "true or false", s);
    nas_err e = {0};
    if (app_setting_set_text(t, c->s, s, name, &e))
        return bad(c, v, "%s", e.msg);
    c->line[ri] = line_of(v);
    return NAS_OK;
}

/* 1 when row t is key of section (NULL: the top level). */
static int row_is(const app_setting *t, const char *section, const char *key)
{
    return t->key && (section == NULL) == (t->section == NULL) && (!section || !strcmp(section, t->section)) &&
           (!key || !strcmp(key, t->key));
}

static int is_section(const char *key)
{
    for (int i = 0; i < app_settings_count(); i++)
        if (app_setting_at(i)->key && app_setting_at(i)->section && !strcmp(app_setting_at(i)->section, key))
            return 1;
    return 0;
}

/* Lists the keys a section takes (and, at the top level, the sections), for
 * the unknown-key message. */
static void known_keys(const char *section, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < app_settings_count() && used < n; i++)
        if (row_is(app_setting_at(i), section, NULL))
            used += snprintf(buf + used, n - used, "%s%s", used ? ", " : "", app_setting_at(i)->key);
    for (int i = 0; !section && i < app_settings_count() && used < n; i++) {
        const char *sec = app_setting_at(i)->key ? app_setting_at(i)->section : NULL;
        int first = sec != NULL;
        for (int k = 0; first && k < i; k++)
            first = !app_setting_at(k)->key || !app_setting_at(k)->section || strcmp(app_setting_at(k)->section, sec);
        if (first)
            used += snprintf(buf + used, n - used, ", %s", sec);
    }
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
        if (!section && is_section(key)) {
            st = walk_mapping(c, v, key);
            continue;
        }
        int fi = -1;
        for (int i = 0; i < app_settings_count(); i++)
            if (row_is(app_setting_at(i), section, key))
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

static int row_index(const char *section, const char *key)
{
    for (int i = 0; i < app_settings_count(); i++)
        if (row_is(app_setting_at(i), section, key))
            return i;
    return -1;
}

/* data.set and data.dir composed into data ("idx:DIR"), as --data takes it. */
static nas_status compose_data(parse_ctx *c)
{
    app_settings *s = c->s;
    int l_set = c->line[row_index("data", "set")], l_dir = c->line[row_index("data", "dir")];
    const char *set = s->data_set[0] ? s->data_set : "mnist";
    /* mnist and fashion-mnist have homes of their own (data/, Debian's package) */
    int needs_dir = strcmp(set, "mnist") != 0 && strcmp(set, "fashion-mnist") != 0;
    if (needs_dir && !s->data_folder[0])
        return nas_errf(c->err, NAS_EINVAL, "%s:%d: data.set: %s needs data.dir (its folder)", c->where, l_set, set);
    const char *loader = !strcmp(set, "cifar10") ? "cifar10" : "idx";
    if (!s->data_folder[0])
        snprintf(s->data, sizeof s->data, "%s", set);
    else if (snprintf(s->data, sizeof s->data, "%s:%s", loader, s->data_folder) >= (int)sizeof s->data)
        return nas_errf(c->err, NAS_EINVAL, "%s:%d: data.dir: too long", c->where, l_dir);
    return NAS_OK;
}

/* Checks that concern more than one key; messages name the later line. */
static nas_status cross_check(parse_ctx *c)
{
    app_settings *s = c->s;
    int l_mj = c->line[row_index("objective", "target_mj")];
    int l_ms = c->line[row_index("objective", "target_ms")];
    if (l_mj && l_ms)
        return nas_errf(c->err, NAS_EINVAL,
                        "%s:%d: objective: give target_mj or target_ms, not both (other on line %d)",
                        c->where, l_mj > l_ms ? l_mj : l_ms, l_mj > l_ms ? l_ms : l_mj);
    int search = !strcmp(s->job, "search");
    if (search && !l_mj && !l_ms)
        return nas_errf(c->err, NAS_EINVAL,
                        "%s: objective: a search job needs objective.target_mj or "
                        "objective.target_ms", c->where);
    int l_sample = c->line[row_index("strategy", "sample")];
    if (s->population && s->sample > s->population)
        return nas_errf(c->err, NAS_EINVAL,
                        "%s:%d: strategy.sample: %ld is larger than strategy.population (%ld)",
                        c->where, l_sample ? l_sample : c->line[row_index("strategy", "population")],
                        s->sample, s->population);
    for (int i = 0; i < app_settings_count(); i++) {
        const app_setting *t = app_setting_at(i);
        if (t->only_for && c->line[i] && strcmp(t->only_for, s->strategy) != 0)
            return nas_errf(c->err, NAS_EINVAL,
                            "%s:%d: strategy.%s: only for strategy kind %s (this job's is %s)",
                            c->where, c->line[i], t->key, t->only_for, s->strategy);
    }
    return compose_data(c);
}

nas_status app_job_parse(const char *text, size_t len, const char *where, app_settings *s, nas_err *err)
{
    app_settings_defaults(s);
    snprintf(s->data, sizeof s->data, "mnist");
    if (app_settings_count() > MAX_ROWS)
        return nas_errf(err, NAS_EINTERNAL, "job: the settings table outgrew the parser (%d rows)", app_settings_count());
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r'))
        i++;
    if (i < len && text[i] == '{') {
        json_error_t je;
        nas_status st;
        json_t *root = nas_json_load(text, len, JSON_REJECT_DUPLICATES, &je, &st);
        if (!root)
            return nas_errf(err, st, "%s:%d: %s", where, je.line, je.text);
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
    parse_ctx c = {.where = where, .doc = &doc, .s = s, .err = err};
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

nas_status app_job_load(const char *path, app_settings *s, nas_err *err)
{
    char *text = NULL;
    size_t len = 0;
    nas_status st = nas_read_file(path, &text, &len, err);
    if (st) {
        app_settings_defaults(s);
        return st;
    }
    st = app_job_parse(text, len, path, s, err);
    nas_free(text);
    return st;
}
