/* json.c — specs on disk, through jansson.
 *
 * Reading is strict: an unknown key, a wrong type or a value out of range is
 * an error that names the field (as a path: "stages[2].kernel") and what is
 * allowed, because a typo in a spec silently ignored costs a whole search.
 * Omitted optional fields take the defaults documented in README.md.
 */
#include "space/space.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *gate_name(space_gate g) { return g == SPACE_GATE_HSIGMOID ? "hsigmoid" : "sigmoid"; }
static const char *se_base_name(space_se_base b) { return b == SPACE_SE_OF_EXPANDED ? "expanded" : "input"; }

char *space_spec_to_json(const space_spec *s, int pretty)
{
    json_t *stages = json_array();
    int first = 0;   /* the stage's first block index, for the exp_ch overrides */
    for (int i = 0; i < s->n_stages; i++) {
        const space_stage *g = &s->stages[i];
        json_t *o = json_pack("{s:i, s:f, s:i, s:i, s:i, s:f, s:s}", "kernel", g->kernel, "expand", g->expand,
                              "channels", g->out_ch, "repeats", g->repeats, "stride", g->stride, "se",
                              g->se_ratio, "act", space_act_name(g->act));
        int set = 0;
        for (int r = 0; r < g->repeats && first + r < SPACE_MAX_BLOCKS; r++)
            set |= s->exp_ch[first + r] != 0;
        if (o && set) {
            json_t *e = json_array();
            for (int r = 0; r < g->repeats && first + r < SPACE_MAX_BLOCKS; r++)
                json_array_append_new(e, json_integer(s->exp_ch[first + r]));
            json_object_set_new(o, "exp_ch", e);
        }
        json_array_append_new(stages, o);
        first += g->repeats;
    }
    json_t *root = json_pack(
        "{s:s, s:i, s:i, s:i, s:{s:i, s:i, s:i, s:s}, s:o, s:{s:i, s:s}, s:{s:i, s:s}, s:{s:s, s:s, s:s}, s:f}",
        "name", s->name, "resolution", s->resolution, "in_channels", s->in_ch, "num_classes", s->num_classes,
        "stem", "channels", s->stem_ch, "kernel", s->stem_kernel, "stride", s->stem_stride, "act",
        space_act_name(s->stem_act), "stages", stages, "head", "channels", s->head_ch, "act",
        space_act_name(s->head_act), "fc", "channels", s->fc_ch, "act", space_act_name(s->fc_act), "se", "base",
        se_base_name(s->se_base), "act", space_act_name(s->se_act), "gate", gate_name(s->se_gate), "dropout",
        s->dropout);
    if (!root)
        return NULL;
    /* 15 digits: 0.1 prints as 0.1, and 88/24 still rounds back to 88 channels. */
    char *txt = json_dumps(root, (pretty ? JSON_INDENT(2) : JSON_COMPACT) | JSON_PRESERVE_ORDER |
                                     JSON_REAL_PRECISION(15));
    json_decref(root);
    if (!txt)
        return NULL;
    char *out = nas_strdup(txt);
    nas_free(txt);
    return out;
}

/* ---- reading ---------------------------------------------------------- */

typedef struct {
    const char *where;
    nas_err *err;
} ctx_t;

static nas_status bad(ctx_t *c, const char *path, const char *what)
{
    return nas_errf(c->err, NAS_EINVAL, "%s: %s: %s", c->where, path, what);
}

static nas_status check_keys(ctx_t *c, json_t *obj, const char *path, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        int ok = 0;
        for (int i = 0; allowed[i]; i++)
            ok |= !strcmp(key, allowed[i]);
        if (!ok) {
            char msg[512], list[256] = "";
            for (int i = 0; allowed[i]; i++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", allowed[i]);
            snprintf(msg, sizeof msg, "unknown key '%s' (allowed: %s)", key, list);
            return bad(c, path[0] ? path : "(top level)", msg);
        }
    }
    return NAS_OK;
}

/* Optional integer: absent leaves *out alone. */
static nas_status get_int(ctx_t *c, json_t *obj, const char *key, const char *path, int *out)
{
    json_t *v = json_object_get(obj, key);
    char p[128];
    snprintf(p, sizeof p, "%s%s%s", path, path[0] ? "." : "", key);
    if (!v)
        return NAS_OK;
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x < -1000000000 || x > 1000000000)
            return bad(c, p, "integer out of range");
        *out = (int)x;
        return NAS_OK;
    }
    if (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v) && fabs(json_real_value(v)) < 1e9) {
        *out = (int)json_real_value(v);
        return NAS_OK;
    }
    return bad(c, p, "must be an integer");
}

static nas_status get_num(ctx_t *c, json_t *obj, const char *key, const char *path, double *out)
{
    json_t *v = json_object_get(obj, key);
    char p[128];
    snprintf(p, sizeof p, "%s%s%s", path, path[0] ? "." : "", key);
    if (!v)
        return NAS_OK;
    if (!json_is_number(v))
        return bad(c, p, "must be a number");
    *out = json_number_value(v);
    return NAS_OK;
}

static nas_status get_str(ctx_t *c, json_t *obj, const char *key, const char *path, const char **out)
{
    json_t *v = json_object_get(obj, key);
    char p[128];
    snprintf(p, sizeof p, "%s%s%s", path, path[0] ? "." : "", key);
    if (!v)
        return NAS_OK;
    if (!json_is_string(v))
        return bad(c, p, "must be a string");
    *out = json_string_value(v);
    return NAS_OK;
}

static nas_status get_act(ctx_t *c, json_t *obj, const char *path, space_act *out)
{
    const char *s = NULL;
    nas_status st = get_str(c, obj, "act", path, &s);
    if (st || !s)
        return st;
    int a = space_act_from_name(s);
    if (a < 0) {
        char p[128], msg[160];
        snprintf(p, sizeof p, "%s%sact", path, path[0] ? "." : "");
        snprintf(msg, sizeof msg, "'%s' is not allowed (relu, relu6, hswish or swish)", s);
        return bad(c, p, msg);
    }
    *out = (space_act)a;
    return NAS_OK;
}

static nas_status get_obj(ctx_t *c, json_t *root, const char *key, json_t **out)
{
    json_t *v = json_object_get(root, key);
    *out = NULL;
    if (!v)
        return NAS_OK;
    if (!json_is_object(v))
        return bad(c, key, "must be an object");
    *out = v;
    return NAS_OK;
}

#define TRY(x)            \
    do {                  \
        st = (x);         \
        if (st)           \
            return st;    \
    } while (0)

/* A stage's "exp_ch": one integer per repeat (0: derived), into exp[0..repeats)
 * (`room` of them; space_validate checks the values). */
static nas_status read_exp_ch(ctx_t *c, json_t *o, const char *path, int repeats, int *exp, int room)
{
    json_t *v = json_object_get(o, "exp_ch");
    char p[64], msg[96];
    snprintf(p, sizeof p, "%s.exp_ch", path);
    if (!v)
        return NAS_OK;
    if (!json_is_array(v))
        return bad(c, p, "must be a list of integers, one per repeat");
    if ((int)json_array_size(v) != repeats) {
        snprintf(msg, sizeof msg, "%zu values given, the stage has %d repeats", json_array_size(v), repeats);
        return bad(c, p, msg);
    }
    if (repeats > room)
        return bad(c, p, "more blocks than a spec holds");
    for (int r = 0; r < repeats; r++) {
        json_t *x = json_array_get(v, (size_t)r);
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > 1000000) {
            snprintf(msg, sizeof msg, "value %d must be an integer >= 0 (0: derived from expand)", r);
            return bad(c, p, msg);
        }
        exp[r] = (int)json_integer_value(x);
    }
    return NAS_OK;
}

static nas_status read_stage(ctx_t *c, json_t *o, int i, space_stage *g, space_act dflt, int *exp, int room)
{
    static const char *const keys[] = {"kernel", "expand", "channels", "repeats", "stride", "se", "act",
                                       "exp_ch", NULL};
    char path[32];
    nas_status st;
    snprintf(path, sizeof path, "stages[%d]", i);
    if (!json_is_object(o))
        return bad(c, path, "must be an object");
    TRY(check_keys(c, o, path, keys));
    if (!json_object_get(o, "channels"))
        return bad(c, path, "'channels' is required");
    *g = (space_stage){.kernel = 3, .expand = 6, .repeats = 1, .stride = 1, .se_ratio = 0, .act = dflt};
    TRY(get_int(c, o, "kernel", path, &g->kernel));
    TRY(get_num(c, o, "expand", path, &g->expand));
    TRY(get_int(c, o, "channels", path, &g->out_ch));
    TRY(get_int(c, o, "repeats", path, &g->repeats));
    TRY(get_int(c, o, "stride", path, &g->stride));
    TRY(get_num(c, o, "se", path, &g->se_ratio));
    TRY(get_act(c, o, path, &g->act));
    if (g->repeats >= 1 && g->repeats <= 32)   /* else space_validate names the repeats */
        TRY(read_exp_ch(c, o, path, g->repeats, exp, room));
    return NAS_OK;
}

static nas_status read_se(ctx_t *c, json_t *o, space_spec *s)
{
    static const char *const keys[] = {"base", "act", "gate", NULL};
    nas_status st;
    const char *b = NULL, *g = NULL;
    TRY(check_keys(c, o, "se", keys));
    TRY(get_str(c, o, "base", "se", &b));
    TRY(get_str(c, o, "gate", "se", &g));
    TRY(get_act(c, o, "se", &s->se_act));
    if (b && strcmp(b, "input") && strcmp(b, "expanded"))
        return bad(c, "se.base", "not allowed (input or expanded)");
    if (g && strcmp(g, "sigmoid") && strcmp(g, "hsigmoid"))
        return bad(c, "se.gate", "not allowed (sigmoid or hsigmoid)");
    if (b)
        s->se_base = !strcmp(b, "expanded") ? SPACE_SE_OF_EXPANDED : SPACE_SE_OF_INPUT;
    if (g)
        s->se_gate = !strcmp(g, "hsigmoid") ? SPACE_GATE_HSIGMOID : SPACE_GATE_SIGMOID;
    return NAS_OK;
}

static nas_status read_spec(ctx_t *c, json_t *root, space_spec *s)
{
    static const char *const top[] = {"name", "resolution", "in_channels", "num_classes", "stem", "stages",
                                      "head", "fc", "se", "dropout", NULL};
    static const char *const stem_keys[] = {"channels", "kernel", "stride", "act", NULL};
    static const char *const ch_act[] = {"channels", "act", NULL};
    nas_status st;
    if (!json_is_object(root))
        return bad(c, "(top level)", "must be a JSON object");
    TRY(check_keys(c, root, "", top));
    /* Defaults: a 224x224 RGB ImageNet-style net with swish, EfficientNet SE. */
    memset(s, 0, sizeof *s);
    s->resolution = 224;
    s->in_ch = 3;
    s->num_classes = 1000;
    s->stem_ch = 32;
    s->stem_kernel = 3;
    s->stem_stride = 2;
    s->stem_act = s->head_act = s->fc_act = s->se_act = SPACE_ACT_SWISH;
    s->head_ch = 1280;
    s->se_base = SPACE_SE_OF_INPUT;
    s->se_gate = SPACE_GATE_SIGMOID;
    s->dropout = 0.2;
    const char *name = NULL;
    TRY(get_str(c, root, "name", "", &name));
    if (name && strlen(name) >= sizeof s->name) {
        char msg[64];   /* cut, it could end inside a UTF-8 character and not save again */
        snprintf(msg, sizeof msg, "longer than %zu bytes", sizeof s->name - 1);
        return bad(c, "name", msg);
    }
    if (name)
        snprintf(s->name, sizeof s->name, "%s", name);
    TRY(get_int(c, root, "resolution", "", &s->resolution));
    TRY(get_int(c, root, "in_channels", "", &s->in_ch));
    TRY(get_int(c, root, "num_classes", "", &s->num_classes));
    TRY(get_num(c, root, "dropout", "", &s->dropout));
    json_t *o;
    TRY(get_obj(c, root, "stem", &o));
    if (o) {
        TRY(check_keys(c, o, "stem", stem_keys));
        TRY(get_int(c, o, "channels", "stem", &s->stem_ch));
        TRY(get_int(c, o, "kernel", "stem", &s->stem_kernel));
        TRY(get_int(c, o, "stride", "stem", &s->stem_stride));
        TRY(get_act(c, o, "stem", &s->stem_act));
    }
    TRY(get_obj(c, root, "head", &o));
    if (o) {
        TRY(check_keys(c, o, "head", ch_act));
        TRY(get_int(c, o, "channels", "head", &s->head_ch));
        TRY(get_act(c, o, "head", &s->head_act));
    }
    TRY(get_obj(c, root, "fc", &o));
    if (o) {
        TRY(check_keys(c, o, "fc", ch_act));
        TRY(get_int(c, o, "channels", "fc", &s->fc_ch));
        TRY(get_act(c, o, "fc", &s->fc_act));
    }
    TRY(get_obj(c, root, "se", &o));
    if (o)
        TRY(read_se(c, o, s));
    json_t *stages = json_object_get(root, "stages");
    if (!stages)
        return bad(c, "stages", "is required (a list of stage objects)");
    if (!json_is_array(stages))
        return bad(c, "stages", "must be a list of stage objects");
    size_t n = json_array_size(stages);
    if (n < 1 || n > SPACE_MAX_STAGES) {
        char msg[96];
        snprintf(msg, sizeof msg, "%zu stages given (1 to %d allowed)", n, SPACE_MAX_STAGES);
        return bad(c, "stages", msg);
    }
    s->n_stages = (int)n;
    int first = 0;
    for (size_t i = 0; i < n; i++) {
        int room = first < SPACE_MAX_BLOCKS ? SPACE_MAX_BLOCKS - first : 0;
        TRY(read_stage(c, json_array_get(stages, i), (int)i, &s->stages[i], s->stem_act,
                       s->exp_ch + (first < SPACE_MAX_BLOCKS ? first : 0), room));
        if (s->stages[i].repeats > 0 && s->stages[i].repeats <= 32)
            first += s->stages[i].repeats;
    }
    /* Range checks live in one place: space_validate; prefix its message with the source. */
    st = space_validate(s, c->err);
    if (st)
        nas_errctx(c->err, "%s", c->where);
    return st;
}

nas_status space_spec_from_json(const char *text, const char *where, space_spec *spec, nas_err *err)
{
    json_error_t je;
    nas_status st;
    json_t *root = nas_json_load(text, text ? strlen(text) : 0, JSON_REJECT_DUPLICATES, &je, &st);
    if (!root)
        return nas_errf(err, st, "%s: line %d, column %d: %s", where, je.line, je.column, je.text);
    ctx_t c = {where, err};
    st = read_spec(&c, root, spec);
    json_decref(root);
    return st;
}

nas_status space_spec_load(const char *path, space_spec *spec, nas_err *err)
{
    char *txt;
    nas_status st = nas_read_file(path, &txt, NULL, err);
    if (st)
        return st;
    st = space_spec_from_json(txt, path, spec, err);
    nas_free(txt);
    return st;
}

nas_status space_spec_from_arg(const char *arg, space_spec *spec, nas_err *err)
{
    /* A path has a slash or a .json ending; anything else is a preset name. */
    if (strchr(arg, '/') || strstr(arg, ".json"))
        return space_spec_load(arg, spec, err);
    return space_preset(arg, spec, err);
}
