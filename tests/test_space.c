/* test_space.c — the search space: presets against published figures, the
 * genome (validity of 10,000 random genomes, round trips, mutation and
 * crossover), stride adaptation for small inputs, strict JSON, and the
 * per-block exp_ch overrides that pruning writes. */
#include "tests/testutil.h"
#include "space/space.h"

#include <math.h>

static void presets_match_published_costs(void **state)
{
    (void)state;
    assert_int_equal(space_preset_count(), 11);
    for (int i = 0; i < space_preset_count(); i++) {
        space_spec s;
        space_net n;
        space_cost c;
        nas_err e;
        assert_int_equal(space_preset(space_preset_name(i), &s, &e), NAS_OK);
        assert_int_equal(space_resolve(&s, &n, &e), NAS_OK);
        space_cost_of(&n, NULL, 0, &c);
        double p, m;
        const char *src;
        space_preset_published(i, &p, &m, &src);
        double dp = fabs(c.params / p - 1), dm = fabs(c.macs / m - 1);
        if (dp > 0.02 || dm > 0.02)
            fail_msg("%s: params %.0f vs %.0f (%.2f%%), MACs %.0f vs %.0f (%.2f%%)", space_preset_name(i),
                     c.params, p, 100 * dp, c.macs, m, 100 * dm);
    }
}

static void mobilenetv2_structure(void **state)
{
    (void)state;
    space_spec s;
    space_net n;
    nas_err e;
    assert_int_equal(space_preset("mobilenetv2", &s, &e), NAS_OK);
    assert_int_equal(space_resolve(&s, &n, &e), NAS_OK);
    assert_int_equal(n.n_blocks, 17);
    assert_int_equal(n.stem_out_hw, 112);
    assert_int_equal(n.head_hw, 7);
    assert_int_equal(n.blocks[0].exp_ch, 32);    /* expand 1: no expansion conv */
    assert_false(n.blocks[0].residual);          /* 32 -> 16 */
    assert_int_equal(n.blocks[1].exp_ch, 96);
    assert_true(n.blocks[2].residual);           /* second 24-channel block */
    /* torchvision's mobilenet_v2: 3,504,872 parameters exactly. */
    space_cost c;
    space_cost_of(&n, NULL, 0, &c);
    assert_true(c.params == 3504872.0);
}

static void squeeze_excite_widths_follow_each_paper(void **state)
{
    (void)state;
    space_spec s;
    space_net n;
    nas_err e;
    /* EfficientNet: max(1, block input / 4). Block 1 of B0: input 16 -> 4. */
    assert_int_equal(space_preset("efficientnet-b0", &s, &e), NAS_OK);
    assert_int_equal(space_resolve(&s, &n, &e), NAS_OK);
    assert_int_equal(n.blocks[0].se_ch, 8);   /* input 32 */
    assert_int_equal(n.blocks[1].se_ch, 4);   /* input 16 */
    /* MobileNetV3: make_divisible(expanded / 4, 8). Large block 3: 72 -> 24. */
    assert_int_equal(space_preset("mobilenetv3-large", &s, &e), NAS_OK);
    assert_int_equal(space_resolve(&s, &n, &e), NAS_OK);
    assert_int_equal(n.blocks[3].exp_ch, 72);
    assert_int_equal(n.blocks[3].se_ch, 24);
    assert_int_equal(n.blocks[8].exp_ch, 184);   /* 80 * 2.3 rounds to 184 */
}

static void make_divisible_rounds_like_reference(void **state)
{
    (void)state;
    assert_int_equal(space_make_divisible(32 * 0.35, 8), 16);   /* 8 would lose > 10% */
    assert_int_equal(space_make_divisible(32 * 0.5, 8), 16);
    assert_int_equal(space_make_divisible(20, 8), 24);
    assert_int_equal(space_make_divisible(3, 8), 8);
    assert_int_equal(space_make_divisible(1280 * 1.1, 8), 1408);
    assert_int_equal(space_make_divisible(320 * 1.8, 8), 576);
}

static void compound_scaling_coefficients(void **state)
{
    (void)state;
    /* alpha * beta^2 * gamma^2 ~ 2: each phi step about doubles FLOPs. */
    double r = SPACE_ALPHA * SPACE_BETA * SPACE_BETA * SPACE_GAMMA * SPACE_GAMMA;
    assert_true(fabs(r - 2.0) < 0.1);
    space_spec s;
    nas_err e;
    assert_int_equal(space_preset("efficientnet-b0", &s, &e), NAS_OK);
    space_scale(&s, 1.0, 1.1);   /* B1's depth: repeats rounded up per stage */
    int want[7] = {2, 3, 3, 4, 4, 5, 2};
    for (int i = 0; i < 7; i++)
        assert_int_equal(s.stages[i].repeats, want[i]);
}

static void small_inputs_keep_a_real_feature_map(void **state)
{
    (void)state;
    const int res[3] = {28, 32, 224};
    const int want_side[3] = {4, 4, 7};
    for (int p = 0; p < space_preset_count(); p++) {
        for (int r = 0; r < 3; r++) {
            space_spec s;
            space_net n;
            nas_err e;
            assert_int_equal(space_preset(space_preset_name(p), &s, &e), NAS_OK);
            space_adapt_strides(&s, res[r], 4);
            assert_int_equal(space_resolve(&s, &n, &e), NAS_OK);
            if (n.head_hw != want_side[r])
                fail_msg("%s at %d: head map %d", space_preset_name(p), res[r], n.head_hw);
        }
    }
    /* At 224 the published strides stay as they are. */
    space_spec s;
    nas_err e;
    assert_int_equal(space_preset("mobilenetv2", &s, &e), NAS_OK);
    space_adapt_strides(&s, 224, 4);
    assert_int_equal(s.stem_stride, 2);
}

static void random_genomes_are_all_valid(void **state)
{
    (void)state;
    const int res[3] = {28, 32, 224};
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 2024, 7);
    for (int r = 0; r < 3; r++) {
        space_config cfg;
        space_config_default(&cfg, res[r], r == 0 ? 1 : 3, 10);
        cfg.max_width = 1.25;
        cfg.scale_resolution = r == 2;
        for (int i = 0; i < 10000 / 3 + 1; i++) {
            space_genome g, g2;
            space_spec s, s2;
            space_net n;
            nas_err e;
            space_genome_sample(&cfg, &rng, &g);
            assert_int_equal(space_genome_check(&cfg, &g, &e), NAS_OK);
            if (space_genome_to_spec(&cfg, &g, &s, &e) || space_resolve(&s, &n, &e))
                fail_msg("genome %d at %d: %s", i, res[r], e.msg);
            assert_true(n.head_hw >= cfg.min_side);
            /* genome -> spec -> genome -> the same spec */
            if (space_spec_to_genome(&cfg, &s, &g2, &e))
                fail_msg("round trip: %s", e.msg);
            assert_int_equal(space_genome_to_spec(&cfg, &g2, &s2, &e), NAS_OK);
            char *a = space_spec_to_json(&s, 0), *b = space_spec_to_json(&s2, 0);
            assert_string_equal(a, b);
            nas_free(a);
            nas_free(b);
        }
    }
}

static void mutation_changes_exactly_n_genes(void **state)
{
    (void)state;
    space_config cfg;
    space_config_default(&cfg, 32, 3, 10);
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 5, 5);
    for (int t = 0; t < 2000; t++) {
        space_genome g, m;
        space_genome_sample(&cfg, &rng, &g);
        m = g;
        int k = 1 + t % 4;
        space_genome_mutate(&cfg, &rng, &m, k);
        int diff = 0;
        for (int i = 0; i < g.n; i++)
            diff += g.g[i] != m.g[i];
        assert_int_equal(diff, k);
        nas_err e;
        space_spec s;
        assert_int_equal(space_genome_to_spec(&cfg, &m, &s, &e), NAS_OK);
    }
}

static void crossover_takes_whole_stages_from_parents(void **state)
{
    (void)state;
    space_config cfg;
    space_config_default(&cfg, 32, 3, 10);
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 9, 9);
    int from_a = 0, from_b = 0;
    for (int t = 0; t < 500; t++) {
        space_genome a, b, c;
        space_genome_sample(&cfg, &rng, &a);
        space_genome_sample(&cfg, &rng, &b);
        space_genome_crossover(&cfg, &rng, &a, &b, &c);
        for (int s = 0; s < cfg.n_stages; s++) {
            int same_a = !memcmp(c.g + 5 * s, a.g + 5 * s, 5), same_b = !memcmp(c.g + 5 * s, b.g + 5 * s, 5);
            assert_true(same_a || same_b);
            from_a += same_a;
            from_b += same_b;
        }
        nas_err e;
        space_spec sp;
        assert_int_equal(space_genome_to_spec(&cfg, &c, &sp, &e), NAS_OK);
    }
    assert_true(from_a > 1000 && from_b > 1000);   /* both parents contribute, about half each */
}

static void genome_strings_round_trip_and_reject_junk(void **state)
{
    (void)state;
    space_config cfg;
    space_config_default(&cfg, 28, 1, 10);
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 1, 1);
    space_genome g, h;
    space_genome_sample(&cfg, &rng, &g);
    char buf[256];
    nas_err e;
    space_genome_to_string(&g, buf, sizeof buf);
    assert_int_equal(space_genome_from_string(buf, &h, &e), NAS_OK);
    assert_int_equal(h.n, g.n);
    assert_memory_equal(h.g, g.g, (size_t)g.n);
    assert_int_equal(space_genome_from_string("1.x.2", &h, &e), NAS_EINVAL);
    assert_int_equal(space_genome_from_string("1.2.", &h, &e), NAS_EINVAL);
    assert_int_equal(space_genome_from_string("", &h, &e), NAS_EINVAL);
    /* A gene out of range is named. */
    g.g[3] = 200;
    assert_int_equal(space_genome_check(&cfg, &g, &e), NAS_EINVAL);
    assert_non_null(strstr(e.msg, "stage0.se"));
}

static void json_round_trips_every_preset(void **state)
{
    (void)state;
    for (int i = 0; i < space_preset_count(); i++) {
        space_spec s, t;
        space_net n1, n2;
        space_cost c1, c2;
        nas_err e;
        assert_int_equal(space_preset(space_preset_name(i), &s, &e), NAS_OK);
        char *txt = space_spec_to_json(&s, 1);
        assert_non_null(txt);
        if (space_spec_from_json(txt, "mem", &t, &e))
            fail_msg("%s: %s", space_preset_name(i), e.msg);
        nas_free(txt);
        assert_int_equal(space_resolve(&s, &n1, &e), NAS_OK);
        assert_int_equal(space_resolve(&t, &n2, &e), NAS_OK);
        space_cost_of(&n1, NULL, 0, &c1);
        space_cost_of(&n2, NULL, 0, &c2);
        assert_true(c1.params == c2.params && c1.macs == c2.macs);
        assert_string_equal(s.name, t.name);
    }
}

static void expect_json_error(const char *text, const char *needle)
{
    space_spec s;
    nas_err e;
    nas_err_clear(&e);
    nas_status st = space_spec_from_json(text, "t.json", &s, &e);
    if (st != NAS_EINVAL || !strstr(e.msg, needle) || !strstr(e.msg, "t.json"))
        fail_msg("for %s: status %d, message '%s', wanted '%s'", text, st, e.msg, needle);
}

static void json_errors_name_the_field(void **state)
{
    (void)state;
    expect_json_error("{\"stages\":[{\"channels\":16,\"kernel\":4}]}", "stages[0].kernel: 4 is not allowed (3, 5 or 7)");
    expect_json_error("{\"stages\":[{\"channels\":16,\"kernal\":3}]}", "unknown key 'kernal'");
    expect_json_error("{\"stages\":[{\"channels\":16},{\"channels\":\"x\"}]}", "stages[1].channels: must be an integer");
    expect_json_error("{\"stages\":[{\"channels\":16,\"act\":\"gelu\"}]}", "stages[0].act: 'gelu' is not allowed");
    expect_json_error("{\"stages\":[{\"channels\":16,\"stride\":3}]}", "stages[0].stride");
    expect_json_error("{\"stages\":[{\"kernel\":3}]}", "'channels' is required");
    expect_json_error("{\"resolution\":4,\"stages\":[{\"channels\":16}]}", "resolution: 4 is out of range");
    expect_json_error("{\"stem\":{\"channels\":0},\"stages\":[{\"channels\":16}]}", "stem.channels");
    expect_json_error("{\"se\":{\"gate\":\"relu\"},\"stages\":[{\"channels\":16}]}", "se.gate");
    expect_json_error("{\"resolution\":224}", "stages: is required");
    expect_json_error("{\"stages\":[]}", "0 stages given");
    expect_json_error("[1,2]", "must be a JSON object");
    expect_json_error("{\"stages\":[{\"channels\":16,}", "line 1");
    expect_json_error("", "t.json");
    expect_json_error("{\"dropout\":1.5,\"stages\":[{\"channels\":16}]}", "dropout");
    expect_json_error("{\"stages\":[{\"channels\":16,\"repeats\":100}]}", "stages[0].repeats");
}

/* Every byte-level corruption of a valid spec either parses or is refused
 * with a message: nothing crashes (run under ASan by make test-asan). */
static void json_survives_corruption(void **state)
{
    (void)state;
    space_spec s;
    nas_err e;
    assert_int_equal(space_preset("mobilenetv3-small", &s, &e), NAS_OK);
    char *txt = space_spec_to_json(&s, 0);
    size_t len = strlen(txt);
    nas_pcg32 rng;
    nas_pcg32_seed(&rng, 77, 1);
    const char junk[] = "{}[]\",:0123456789-.eE tfn\\x";
    for (int t = 0; t < 3000; t++) {
        char *m = strdup(txt);
        int edits = 1 + (int)nas_pcg32_bounded(&rng, 4);
        for (int k = 0; k < edits; k++)
            m[nas_pcg32_bounded(&rng, (uint32_t)len)] = junk[nas_pcg32_bounded(&rng, sizeof junk - 1)];
        space_spec out;
        nas_err_clear(&e);
        nas_status st = space_spec_from_json(m, "fuzz", &out, &e);
        assert_true(st == NAS_OK || (st == NAS_EINVAL && e.msg[0]));
        if (st == NAS_OK) {
            space_net n;
            assert_int_equal(space_resolve(&out, &n, &e), NAS_OK);
        }
        free(m);
    }
    nas_free(txt);
}

static void cli_space_show_and_sample(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(tu_run_nas("space show efficientnet-b0 --json", &out), 0);
    assert_non_null(strstr(out, "\"params\": 5288548"));
    assert_non_null(strstr(out, "\"macs\""));
    assert_non_null(strstr(out, "\"layers\""));
    free(out);
    assert_int_equal(tu_run_nas("space sample -n 3 --seed 4 --resolution 28 --in-channels 1 --classes 10 --json", &out), 0);
    assert_non_null(strstr(out, "\"samples\""));
    char *again = NULL;
    assert_int_equal(tu_run_nas("space sample -n 3 --seed 4 --resolution 28 --in-channels 1 --classes 10 --json", &again), 0);
    assert_string_equal(out, again);   /* same seed, same samples */
    free(out);
    free(again);
    assert_int_equal(tu_run_nas("space show no-such-net 2>/dev/null", NULL), 2);
    assert_int_equal(tu_run_nas("space sample -n 0 2>/dev/null", NULL), 2);
    assert_int_equal(tu_run_nas("space frobnicate 2>/dev/null", NULL), 2);
    assert_int_equal(tu_run_nas("--help >/dev/null", NULL), 0);
    assert_int_equal(tu_run_nas("space --help >/dev/null", NULL), 0);
}

/* Per-block exp_ch overrides (what nas prune writes): resolved, honoured by the
 * layer list, written per stage and read back, and refused where they cannot
 * hold, each error naming the stage and repeat. */
static const char *TINY_JSON =
    "{\"resolution\": 16, \"in_channels\": 1, \"num_classes\": 10,"
    " \"stem\": {\"channels\": 8, \"kernel\": 3, \"stride\": 1},"
    " \"stages\": [{\"kernel\": 3, \"expand\": 1, \"channels\": 8},"
    "  {\"kernel\": 3, \"expand\": 6, \"channels\": 16, \"repeats\": 2, \"stride\": 2, \"se\": 0.25},"
    "  {\"kernel\": 5, \"expand\": 4, \"channels\": 24, \"stride\": 2, \"se\": 0.25}],"
    " \"head\": {\"channels\": 32}}";

static void tiny(space_spec *s, space_net *a)
{
    nas_err err;
    assert_int_equal(space_spec_from_json(TINY_JSON, "tiny", s, &err), NAS_OK);
    assert_int_equal(space_resolve(s, a, &err), NAS_OK);
}

static void exp_ch_overrides(void **state)
{
    (void)state;
    space_spec s;
    space_net a;
    nas_err err;
    tiny(&s, &a);
    assert_int_equal(a.blocks[1].exp_ch, 48);
    assert_int_equal(a.blocks[1].se_ch, 2);
    s.exp_ch[1] = 24;
    s.exp_ch[3] = 40;
    assert_int_equal(space_resolve(&s, &a, &err), NAS_OK);
    assert_int_equal(a.blocks[1].exp_ch, 24);
    assert_int_equal(a.blocks[2].exp_ch, 96);
    assert_int_equal(a.blocks[3].exp_ch, 40);
    assert_int_equal(a.blocks[1].se_ch, 2);   /* SE's middle: from the derived width */
    space_layers L;
    assert_int_equal(space_layers_build(&a, &L, &err), NAS_OK);
    int seen = 0;
    for (int i = 0; i < L.n; i++)
        if (!strcmp(L.op[i].name, "b1.expand")) {
            assert_int_equal(L.op[i].out_ch, 24);
            seen = 1;
        }
    assert_true(seen);
    space_layers_free(&L);

    /* JSON: written per stage, read back the same */
    char *txt = space_spec_to_json(&s, 0);
    assert_non_null(strstr(txt, "\"exp_ch\":[24,0]"));
    space_spec back;
    assert_int_equal(space_spec_from_json(txt, "back", &back, &err), NAS_OK);
    assert_memory_equal(back.exp_ch, s.exp_ch, sizeof s.exp_ch);
    nas_free(txt);
    space_spec plain;
    tiny(&plain, &a);
    txt = space_spec_to_json(&plain, 0);
    assert_null(strstr(txt, "exp_ch"));   /* absent unless set: older readers still read it */
    nas_free(txt);

    /* refusals, each naming the stage and repeat */
    space_spec b = plain;
    b.exp_ch[0] = 4;   /* stage 0 has expand 1 */
    assert_int_equal(space_validate(&b, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "stages[0].exp_ch[0]"));
    b = plain;
    b.exp_ch[2] = 16;  /* the block's input width */
    assert_int_equal(space_validate(&b, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "stages[1].exp_ch[1]"));
    assert_non_null(strstr(err.msg, "input width"));
    b = plain;
    b.exp_ch[3] = 65;  /* wider than derived */
    assert_int_equal(space_validate(&b, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "1 to 64"));
    b = plain;
    b.exp_ch[4] = 8;   /* past the last block */
    assert_int_equal(space_validate(&b, &err), NAS_EINVAL);
    const char *bad_len = "{\"resolution\": 16, \"in_channels\": 1, \"num_classes\": 10, \"stages\": "
                          "[{\"expand\": 6, \"channels\": 16, \"repeats\": 2, \"exp_ch\": [24]}]}";
    assert_int_equal(space_spec_from_json(bad_len, "x.json", &b, &err), NAS_EINVAL);
    assert_non_null(strstr(err.msg, "stages[0].exp_ch"));
    /* a scaled spec has other widths: the overrides go */
    b = s;
    space_scale(&b, 2.0, 1.0);
    for (int j = 0; j < SPACE_MAX_BLOCKS; j++)
        assert_int_equal(b.exp_ch[j], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(presets_match_published_costs),
        cmocka_unit_test(mobilenetv2_structure),
        cmocka_unit_test(squeeze_excite_widths_follow_each_paper),
        cmocka_unit_test(make_divisible_rounds_like_reference),
        cmocka_unit_test(compound_scaling_coefficients),
        cmocka_unit_test(small_inputs_keep_a_real_feature_map),
        cmocka_unit_test(random_genomes_are_all_valid),
        cmocka_unit_test(mutation_changes_exactly_n_genes),
        cmocka_unit_test(crossover_takes_whole_stages_from_parents),
        cmocka_unit_test(genome_strings_round_trip_and_reject_junk),
        cmocka_unit_test(json_round_trips_every_preset),
        cmocka_unit_test(json_errors_name_the_field),
        cmocka_unit_test(json_survives_corruption),
        cmocka_unit_test(cli_space_show_and_sample),
        cmocka_unit_test(exp_ch_overrides),
    };
    return cmocka_run_group_tests_name("space", tests, NULL, NULL);
}
