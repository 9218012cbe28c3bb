/* cmd_space.c — `nas space sample|show`: look at the search space and at
 * single architectures (presets or spec files) with their cost model. */
#include "cli/cli.h"
#include "space/space.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *kind_name(space_layer_kind k)
{
    switch (k) {
    case SPACE_LAYER_CONV:       return "conv";
    case SPACE_LAYER_DWCONV:     return "dwconv";
    case SPACE_LAYER_SE:         return "se";
    case SPACE_LAYER_POOL:       return "pool";
    case SPACE_LAYER_FC:         return "fc";
    case SPACE_LAYER_CLASSIFIER: return "linear";
    }
    return "?";
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nas space sample [--seed S] [-n N] [--resolution R] [--in-channels C]\n"
            "                        [--classes K] [--max-width W] [--json]\n"
            "       nas space show SPEC.json|PRESET [--resolution R] [--json]\n\n"
            "sample: N architectures drawn from the search space (genome, spec JSON, params, MACs).\n"
            "show:   the per-layer table and totals of one architecture. --resolution adapts the\n"
            "        strides to a small input (28 or 32) as the search space does.\n"
            "presets: ");
    for (int i = 0; i < space_preset_count(); i++)
        fprintf(f, "%s%s", i ? ", " : "", space_preset_name(i));
    fprintf(f, "\n");
    fprintf(f, "\nexample:\n  %s\n", "nas space sample -n 3 --resolution 32");
}

/* The spec JSON as a jansson object (for embedding in --json output). */
static json_t *spec_json(const space_spec *s)
{
    char *txt = space_spec_to_json(s, 0);
    json_t *j = txt ? nas_json_load(txt, strlen(txt), 0, NULL, NULL) : NULL;
    nas_free(txt);
    return j;
}

static int sample(int argc, char **argv)
{
    long seed = 1, n = 5, res = 224, in_ch = 3, classes = 1000;
    double max_w = 1.0;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        int bad = 1;
        if (!strcmp(a, "--seed"))
            bad = cli_parse_int(v, 0, 0x7fffffffL, &seed);
        else if (!strcmp(a, "-n"))
            bad = cli_parse_int(v, 1, 100000, &n);
        else if (!strcmp(a, "--resolution"))
            bad = cli_parse_int(v, 8, 1024, &res);
        else if (!strcmp(a, "--in-channels"))
            bad = cli_parse_int(v, 1, 4, &in_ch);
        else if (!strcmp(a, "--classes"))
            bad = cli_parse_int(v, 2, 100000, &classes);
        else if (!strcmp(a, "--max-width"))
            bad = cli_parse_double(v, 0.25, 1.25, &max_w);
        else
            return cli_usage_error("space sample", "unknown option '%s'", a);
        if (bad)
            return cli_usage_error("space sample", "%s needs a value in range, got '%s'", a, v ? v : "");
        i++;
    }
    space_config cfg;
    space_config_default(&cfg, (int)res, (int)in_ch, (int)classes);
    cfg.max_width = max_w;
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, (uint64_t)seed, 0x5ace);
    json_t *arr = json_array();
    for (long k = 0; k < n; k++) {
        space_genome g;
        space_spec s;
        space_net net;
        space_cost cost;
        nas_err err;
        space_genome_sample(&cfg, &rng, &g);
        nas_status st = space_genome_to_spec(&cfg, &g, &s, &err);
        if (!st)
            st = space_resolve(&s, &net, &err);
        if (st) {
            json_decref(arr);
            return cli_fail("space sample", st, &err);
        }
        space_cost_of(&net, NULL, 0, &cost);
        char gs[256];
        space_genome_to_string(&g, gs, sizeof gs);
        if (json) {
            json_array_append_new(arr, json_pack("{s:s, s:f, s:f, s:f, s:o}", "genome", gs, "params", cost.params,
                                                 "macs", cost.macs, "act_bytes_peak", cost.act_bytes_peak,
                                                 "spec", spec_json(&s)));
        } else {
            char *txt = space_spec_to_json(&s, 0);
            printf("# sample %ld  genome %s  params %.3fM  MACs %.2fM  blocks %d  input %dx%dx%d\n%s\n", k, gs,
                   cost.params / 1e6, cost.macs / 1e6, net.n_blocks, s.resolution, s.resolution, s.in_ch,
                   txt ? txt : "");
            nas_free(txt);
        }
    }
    if (json) {
        if (cli_print_json(json_pack("{s:i, s:o}", "seed", (int)seed, "samples", arr),
                           JSON_INDENT(1) | JSON_PRESERVE_ORDER)) {
            fprintf(stderr, "nas space sample: out of memory writing the JSON list\n");
            return 1;
        }
    } else {
        json_decref(arr);
    }
    return 0;
}

static void print_table(const space_spec *s, const space_net *net, const space_layer *L, int n,
                        const space_cost *c)
{
    printf("%s%s%dx%dx%d input, %d classes, %d blocks\n", s->name, s->name[0] ? ": " : "", s->resolution,
           s->resolution, s->in_ch, s->num_classes, net->n_blocks);
    printf("%-14s %-7s %6s %6s %5s %4s %3s %10s %10s %10s\n", "layer", "kind", "in_ch", "out_ch", "in_hw",
           "k", "s", "params", "MACs", "out_KiB");
    for (int i = 0; i < n; i++)
        printf("%-14s %-7s %6d %6d %5d %4d %3d %10.0f %10.0f %10.1f\n", L[i].name, kind_name(L[i].kind),
               L[i].in_ch, L[i].out_ch, L[i].in_hw, L[i].kernel, L[i].stride, L[i].params, L[i].macs,
               L[i].out_bytes / 1024.0);
    printf("total: params %.0f (%.3fM), MACs %.0f (%.2fM), activations written %.2f MiB, "
           "peak live %.2f MiB, bytes moved %.2f MiB (batch 1, fp32)\n",
           c->params, c->params / 1e6, c->macs, c->macs / 1e6, c->act_bytes_total / 1048576.0,
           c->act_bytes_peak / 1048576.0, c->rw_bytes / 1048576.0);
}

static int show(int argc, char **argv)
{
    const char *what = NULL;
    long res = 0;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json"))
            json = 1;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--resolution")) {
            if (cli_parse_int(i + 1 < argc ? argv[i + 1] : NULL, 8, 1024, &res))
                return cli_usage_error("space show", "--resolution needs an integer 8..1024");
            i++;
        } else if (a[0] == '-')
            return cli_usage_error("space show", "unknown option '%s'", a);
        else if (what)
            return cli_usage_error("space show", "one spec or preset at a time ('%s' and '%s')", what, a);
        else
            what = a;
    }
    if (!what)
        return cli_usage_error("space show", "which spec? give SPEC.json or a preset name");
    space_spec s;
    space_net net;
    nas_err err;
    nas_status st = space_spec_from_arg(what, &s, &err);
    if (!st && res)
        space_adapt_strides(&s, (int)res, 4);
    if (!st)
        st = space_resolve(&s, &net, &err);
    if (st)
        return cli_fail("space show", st, &err);
    space_cost c;
    int n = space_cost_of(&net, NULL, 0, &c);
    space_layer *L = nas_malloc(sizeof *L * (size_t)n);
    if (!L)
        return cli_fail("space show", NAS_ENOMEM, NULL);
    space_cost_of(&net, L, n, &c);
    if (json) {
        json_t *layers = json_array();
        for (int i = 0; i < n; i++)
            json_array_append_new(layers, json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:f}",
                                                    "name", L[i].name, "kind", kind_name(L[i].kind), "in_ch",
                                                    L[i].in_ch, "out_ch", L[i].out_ch, "in_hw", L[i].in_hw,
                                                    "out_hw", L[i].out_hw, "kernel", L[i].kernel, "stride",
                                                    L[i].stride, "params", L[i].params, "macs", L[i].macs,
                                                    "out_bytes", L[i].out_bytes));
        json_t *root = json_pack("{s:s, s:f, s:f, s:f, s:f, s:i, s:o, s:o}", "name", s.name, "params", c.params,
                                 "macs", c.macs, "act_bytes_total", c.act_bytes_total, "act_bytes_peak",
                                 c.act_bytes_peak, "blocks", net.n_blocks, "spec", spec_json(&s), "layers",
                                 layers);
        json_dumpf(root, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
        printf("\n");
        json_decref(root);
    } else {
        print_table(&s, &net, L, n, &c);
    }
    nas_free(L);
    return 0;
}

int cmd_space(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "sample"))
        return sample(argc - 1, argv + 1);
    if (!strcmp(argv[1], "show"))
        return show(argc - 1, argv + 1);
    return cli_usage_error("space", "unknown subcommand '%s' (sample or show)", argv[1]);
}
