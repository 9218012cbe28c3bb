/* settings.c — what reports and exports read back from a run's saved
 * settings. A search saves {"command": "search", "settings": {KEY: value},
 * "normalisation": {...}}, KEY being the flag's name without its dashes
 * ("target-mj"). This file is the one place that knows that shape; a key at
 * the top level is read too (runs made by hand). */
#include "runs/runs.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The value of key: under "settings", else at the top level. */
static json_t *setting_in(json_t *root, const char *key)
{
    json_t *v = json_object_get(json_object_get(root, "settings"), key);
    return v ? v : json_object_get(root, key);
}

/* A run's settings as a tree; no text reads as "{}". */
static json_t *settings_root(const char *settings_json)
{
    const char *t = settings_json ? settings_json : "{}";
    return nas_json_load(t, strlen(t), 0, NULL, NULL);
}

double runs_settings_number(const char *settings_json, const char *key)
{
    json_t *root = settings_root(settings_json);
    json_t *v = setting_in(root, key);
    double x = json_is_number(v) ? json_number_value(v) : NAN;
    json_decref(root);
    return x;
}

int runs_settings_string(const char *settings_json, const char *key, char *buf, size_t n)
{
    json_t *root = settings_root(settings_json);
    json_t *v = setting_in(root, key);
    int found = json_is_string(v);
    if (found && n > 0)
        snprintf(buf, n, "%s", json_string_value(v));
    json_decref(root);
    return found;
}

#define NORM_KEY "normalisation"

char *runs_settings_with_norm(const char *settings_json, const runs_norm *nm)
{
    json_t *root = settings_root(settings_json);
    json_t *mean = json_array(), *std = json_array();
    char *out = NULL;
    if (!json_is_object(root) || !mean || !std || nm->channels < 1 || nm->channels > RUNS_NORM_MAX)
        goto cleanup;
    for (int c = 0; c < nm->channels; c++) {
        json_array_append_new(mean, json_real(nm->mean[c]));
        json_array_append_new(std, json_real(nm->std[c]));
    }
    json_object_set_new(root, NORM_KEY, json_pack("{s:O,s:O}", "mean", mean, "std", std));
    char *s = json_dumps(root, JSON_COMPACT);
    out = s ? nas_strdup(s) : NULL;
    nas_free(s);
cleanup:
    json_decref(mean);
    json_decref(std);
    json_decref(root);
    return out;
}

int runs_settings_norm(const char *settings_json, runs_norm *nm)
{
    json_t *root = settings_root(settings_json);
    json_t *o = json_object_get(root, NORM_KEY);
    json_t *mean = json_object_get(o, "mean"), *std = json_object_get(o, "std");
    size_t n = json_array_size(mean);
    int ok = n >= 1 && n <= RUNS_NORM_MAX && json_array_size(std) == n;
    memset(nm, 0, sizeof *nm);
    for (size_t c = 0; ok && c < n; c++) {
        json_t *m = json_array_get(mean, c), *s = json_array_get(std, c);
        ok = json_is_number(m) && json_is_number(s) && json_number_value(s) > 0;
        if (ok) {
            nm->mean[c] = json_number_value(m);
            nm->std[c] = json_number_value(s);
        }
    }
    nm->channels = ok ? (int)n : 0;
    json_decref(root);
    return ok;
}
