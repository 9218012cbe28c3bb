/* netjson.h — a resolved space_net as the JSON that tests/torch_check.py and
 * bench/bench_train.py read to build the same network in PyTorch. Shared by
 * the PyTorch cross-check and the training benchmark. */
#ifndef NETJSON_H
#define NETJSON_H

#include <jansson.h>
#include "space/space.h"

static inline json_t *nj_net(const space_net *a)
{
    json_t *blocks = json_array();
    for (int i = 0; i < a->n_blocks; i++) {
        const space_block *b = &a->blocks[i];
        json_array_append_new(blocks, json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:b}", "in", b->in_ch,
                                                "exp", b->exp_ch, "out", b->out_ch, "k", b->kernel, "s",
                                                b->stride, "se", b->se_ch, "act", space_act_name(b->act),
                                                "residual", b->residual));
    }
    json_t *o = json_object();
    json_object_set_new(o, "resolution", json_integer(a->resolution));
    json_object_set_new(o, "in_ch", json_integer(a->in_ch));
    json_object_set_new(o, "num_classes", json_integer(a->num_classes));
    json_object_set_new(o, "stem_ch", json_integer(a->stem_ch));
    json_object_set_new(o, "stem_kernel", json_integer(a->stem_kernel));
    json_object_set_new(o, "stem_stride", json_integer(a->stem_stride));
    json_object_set_new(o, "stem_act", json_string(space_act_name(a->stem_act)));
    json_object_set_new(o, "blocks", blocks);
    json_object_set_new(o, "head_in_ch", json_integer(a->head_in_ch));
    json_object_set_new(o, "head_ch", json_integer(a->head_ch));
    json_object_set_new(o, "head_act", json_string(space_act_name(a->head_act)));
    json_object_set_new(o, "pool_ch", json_integer(a->pool_ch));
    json_object_set_new(o, "fc_ch", json_integer(a->fc_ch));
    json_object_set_new(o, "fc_act", json_string(space_act_name(a->fc_act)));
    json_object_set_new(o, "classifier_in", json_integer(a->classifier_in));
    json_object_set_new(o, "se_act", json_string(space_act_name(a->se_act)));
    json_object_set_new(o, "se_gate", json_string(a->se_gate == SPACE_GATE_HSIGMOID ? "hsigmoid" : "sigmoid"));
    json_object_set_new(o, "dropout", json_real(a->dropout));
    return o;
}

#endif
