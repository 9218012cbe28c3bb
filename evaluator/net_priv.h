/* net_priv.h — what train.c and the white-box tests see of a network beyond
 * ev.h: one training step's pieces and the flat parameter, gradient and
 * momentum arrays (module-private). */
#ifndef EV_NET_PRIV_H
#define EV_NET_PRIV_H

#include "evaluator/ev.h"
#include "evaluator/ops.h"

/* Flat arrays of every parameter (and the batch-norm running statistics,
 * which are state, not parameters: their gradients stay zero). */
float *evn_params(ev_net *net, size_t *count);
float *evn_grads(ev_net *net);
float *evn_momentum(ev_net *net);
/* A batch buffer of the net's own (batch x H x W x C), for train.c to fill. */
float *evn_input(ev_net *net);
const float *evn_logits(const ev_net *net);
int evn_threads(const ev_net *net);
int evn_batch(const ev_net *net);   /* the largest batch it was built for */
void evn_set_threads(ev_net *net, int threads);

/* Zeroes the gradients, runs forward in training mode (batch statistics,
 * dropout from rng) and backward; returns the mean loss of the batch and the
 * number of correct argmax predictions. A non-finite loss skips backward. */
double evn_train_step(ev_net *net, const float *x, const uint8_t *labels, int batch,
                      float label_smoothing, nas_pcg32 *rng, int *correct);
/* The same step learning from a teacher's logits too (batch x classes; NULL:
 * labels only), by op_kd_forward_backward at temperature T and weight alpha. */
double evn_train_step_kd(ev_net *net, const float *x, const uint8_t *labels, int batch,
                         float label_smoothing, const float *teacher, float T, float alpha,
                         nas_pcg32 *rng, int *correct);
/* SGD with Nesterov momentum (PyTorch's form), weight decay on conv and
 * linear weights only. */
void evn_sgd(ev_net *net, float lr, float momentum, float weight_decay);

/* The engine's activation for a space activation (one mapping: training,
 * inference and the int8 path use it). */
op_act evn_act_of(space_act a);

#endif
