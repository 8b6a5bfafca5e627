/* plugin.h: the one header a prunus plugin includes. It defines the plugin ABI:
 * the exported entry point, the descriptor, the per-kind ops and the host services.
 *
 * Contract words: MUST / MAY / SHOULD as in RFC 2119. "host" = libprunus;
 * "plugin" = the shared object. Plain C, no GLib or libconfig types, so a plugin
 * builds with nothing but this header (C11 or later).
 *
 * Life of a plugin instance:
 *   1. The host dlopen()s the .so (RTLD_NOW | RTLD_LOCAL) and calls
 *      prunus_plugin_describe(0), (1), ... until NULL; each result is a static
 *      descriptor. The host checks abi_version, size, kind, name and the ops
 *      table, and copies what it reads of the descriptor and the ops table (rule
 *      G1 below): changing either after load has no effect.
 *   2. create(host, services, &state): the plugin reads its settings through
 *      services->get_* (each key in its config group that neither it nor the host
 *      reads is an error the host reports with file:line; the host reads `plugin`,
 *      and a criterion's `calib_batches` and `calib_batch`) and allocates its state.
 *   3. The kind's ops are called (see each ops table for when).
 *   4. destroy(state) is called exactly once for every successful create(),
 *      before the host dlclose()s the library (in reverse load order).
 * The host MAY create several instances of one descriptor (one per experiment,
 * and one it destroys unused after checking the settings before any data is
 * read); it calls one instance from one thread at a time. The documentation
 * (docs/plugins.md) is installed under share/doc/prunus/docs.
 *
 * Errors: every function that can fail returns int (0 = success, non-zero =
 * failure) and, on failure, SHOULD first call services->set_error() with a
 * message naming what to fix. The host turns it into one error naming the plugin.
 *
 * Ownership: every pointer the host passes is (transfer none) and valid only
 * for the duration of the call, unless stated otherwise. Strings a plugin returns
 * through descriptors are static.
 *
 * Versions and growth. PRUNUS_PLUGIN_ABI_VERSION names a compatible family: a
 * host loads only plugins of its own family, and the number changes only on a
 * real break (a member removed, reordered or retyped, a call given a new
 * meaning). Within a family the header grows by revisions
 * (PRUNUS_PLUGIN_REVISION); a revision only appends members at the END of
 * structs, so a plugin built against any revision loads on a host of any other
 * revision of the same family. The rules that make that true:
 *
 *   G1. Plugin-to-host structs (the descriptor, the ops tables). The host reads
 *       the descriptor's first `size` bytes and the first `ops_size` bytes of
 *       its ops table (revision 1's size of that table when the descriptor is
 *       too small to hold ops_size, or ops_size is 0), into zeroed tables of its
 *       own: every member past what the plugin had reads as 0 / NULL. So 0 /
 *       NULL of every appended member MUST mean what a plugin that predates it
 *       wants (an absent optional op, the old behaviour). A descriptor smaller
 *       than revision 1's, or an ops_size smaller than revision 1's table, is
 *       refused naming the field and both sizes. The descriptor and ops tables
 *       MUST be objects with static storage (so members and padding the plugin
 *       never set read as 0).
 *   G2. Host-to-plugin structs (services, the model view, calibration steps,
 *       scores, plan requests, plans; not PrunusLayerView, see G3). The host passes its own
 * revision. A plugin MUST NOT use a services member appended after revision 1 unless
 *       PRUNUS_HOST_HAS(services, member); and MUST NOT read (or, for scores and
 *       plans, write) a member another of these structs gained in revision N
 *       unless PRUNUS_HOST_REVISION(services) >= N. Likewise for new
 *       PRUNUS_NEED_* / PRUNUS_SCORES_* bits: a plugin asks for a bit added in
 *       revision N only when PRUNUS_HOST_REVISION(services) >= N. A plugin that
 *       cannot work without something newer fails create() with set_error()
 *       naming what it needs.
 *   G3. Arrays of structs never grow: an appended member would move every
 *       element after the first. PrunusLayerView is frozen; new per-layer data
 *       is appended to PrunusModelView as a new array indexed like `layers`
 *       (e.g. `const float *const *inputs;  [layer] ...`). An array a later
 *       revision adds holds scalars or pointers, never structs; an array of
 *       pointers to structs is fine (each struct then grows under G2).
 *   G4. A plugin built against a newer revision than the host's: the host reads
 *       the members it knows and ignores the rest (G1 makes that safe, G2 makes
 *       the plugin check before it relies on anything newer). A descriptor of a
 *       kind the host does not know is refused naming the kind.
 *   G5. Anything else (a member removed or changed, a struct by value, a call
 *       with new arguments) is a break: PRUNUS_PLUGIN_ABI_VERSION changes and
 *       every plugin is rebuilt.
 *
 * Revisions of ABI 1 (each marks its members in place, "appended in revision
 * N", and is listed here; revision 1's sizes, the smallest a host loads, never
 * change):
 *   1  the first: everything not marked otherwise.
 *   2  PrunusPluginDesc.ops_size; PrunusHostServices.revision, get_int_range,
 *      get_double_range; the entry point's prototype in this header.
 *   3  post-training pruning: PRUNUS_NEED_INPUTS, _INPUT_SUMSQ, _INPUT_GRAM,
 *      _LAYERWISE; PrunusModelView's graph (n_nodes, node_*, layer_node,
 *      input_shape); PrunusCalibStep.layer, input_rows, inputs, input_sumsq,
 *      input_gram; PrunusScores.layer; PrunusPlanRequest.round, rounds, target,
 *      layer, pattern_n, pattern_m; PrunusHostServices.plan_request, set_weights,
 *      cholesky, spd_inverse; PrunusCriterionOps.update;
 *      PrunusGranularityOps.pattern.
 *   4  structured pruning of graphs: PrunusModelView's channel groups (is_sequence,
 *      n_groups, group_*, unit_group) and batchnorm parameters (layer_norm_node,
 *      node_norm_scale, node_norm_shift); PRUNUS_SCORES_GROUP and
 *      PrunusScores.group_scores.
 *   5  reconstruction towards the unpruned network: PRUNUS_NEED_INPUT_CROSS and
 *      PrunusCalibStep.input_cross.
 *   6  checks before any data is read: PrunusCriterionOps.check,
 *      PrunusGranularityOps.check and PrunusCheckInfo.
 *   7  the retrain plugin's check: PrunusRetrainOps.check; PrunusCheckInfo.theta0_kept,
 *      rewind_epoch.
 */
#ifndef PRUNUS_PLUGIN_H
#define PRUNUS_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The compatible family: the host loads only plugins whose abi_version equals
 * its own. Changed only on a break (G5 above). */
#define PRUNUS_PLUGIN_ABI_VERSION 1u
/* This header's revision within the family (see "Revisions" above). */
#define PRUNUS_PLUGIN_REVISION 7u

#if defined(_WIN32)
#define PRUNUS_PLUGIN_EXPORT __declspec(dllexport)
#else
#define PRUNUS_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

/* The one symbol a plugin exports. */
#define PRUNUS_PLUGIN_ENTRY_SYMBOL "prunus_plugin_describe"

typedef enum {
  PRUNUS_PLUGIN_CRITERION = 1,   /* scores weights and/or units */
  PRUNUS_PLUGIN_GRANULARITY = 2, /* turns scores into a prune plan */
  PRUNUS_PLUGIN_RETRAIN = 3,     /* what happens after each prune */
} PrunusPluginKind;

typedef enum {
  PRUNUS_LOG_DEBUG = 0, /* shown only when PRUNUS_DEBUG is set */
  PRUNUS_LOG_INFO = 1,
  PRUNUS_LOG_WARNING = 2,
} PrunusLogLevel;

/* Opaque per-instance host handle; passed back to every service. */
typedef struct PrunusHost PrunusHost;

/* ------------------------------------------------------------------------ */
/* Views the host hands to plugins (read-only). */

/* One layer with parameters (dense or conv2d), in the model's current shape.
 * Frozen (G3): it is an array element, so it never gains members. */
typedef struct {
  const char *name;     /* the config's `name`, else the index in model.layers ("1") */
  const char *type;     /* "dense" or "conv2d" */
  int index;            /* position in the layer sequence */
  int n_units;          /* output neurons (dense) or output channels (conv2d) */
  int fan_in;           /* weights per unit: inputs (dense) or cin*k*k (conv2d) */
  size_t n_weights;     /* n_units * fan_in */
  int positions;        /* output positions per unit and sample: 1 (dense), Ho*Wo (conv2d) */
  int prunable;         /* 0 when the config excludes this layer from pruning */
  int is_output;        /* 1 for the last layer (its units are the classes: never removed) */
  const float *weights; /* (n_units, fan_in) */
  const float *bias;    /* (n_units); NULL: no bias (conv2d `bias = false`) */
  const float *mask;    /* (n_units, fan_in): 1 = alive, 0 = pruned */
} PrunusLayerView;

/* The model: its layers with parameters. New per-layer data is appended here as
 * arrays indexed like `layers` (G3). */
typedef struct {
  int n_layers;                  /* layers with parameters only */
  const PrunusLayerView *layers; /* (n_layers) */

  /* ---- appended in revision 3: read only when PRUNUS_HOST_REVISION >= 3 ---- */

  /* The whole network as a graph of nodes, one per layer of the model (with or
   * without parameters: "flatten", "dense", "relu", "conv2d", "maxpool2d", ...), in
   * an order where every node comes after its inputs (today's models are
   * sequences: node i reads node i - 1, node 0 the network input). So a plugin
   * never guesses what lies between two layers with parameters. */
  int n_nodes;
  const char *const *node_name; /* [node] unique; layers[k].name of the node it is */
  const char *const *node_type; /* [node] the config's type name */
  const int *node_n_inputs;     /* [node] how many nodes it reads (1 for a sequence) */
  /* [node][i < node_n_inputs[node]] the names of the nodes it reads; "input" =
   * the network input */
  const char *const *const *node_inputs;
  const int *node_shape;   /* (n_nodes, 3): each node's output per sample (c, h, w) */
  const int *node_kernel;  /* [node] conv2d / maxpool2d: kernel size; 0 otherwise */
  const int *node_stride;  /* [node] conv2d / maxpool2d: stride; 0 otherwise */
  const int *node_padding; /* [node] conv2d: zero padding on each side; 0 otherwise */
  const int *layer_node;   /* [layer] the node that layers[k] is */
  const int *input_shape;  /* (3): the network input per sample (c, h, w) */

  /* ---- appended in revision 4: read only when PRUNUS_HOST_REVISION >= 4 ---- */

  /* 1 when every node reads the node before it (node 0 the network input): a plain
   * sequence, in which every hidden unit is a group of its own. */
  int is_sequence;
  /* Channel groups (docs/plugins.md, "Groups"): units whose channels add, concat,
   * batchnorm, pooling or flatten tie together, so that they are removed together or
   * not at all: a plan that removes some units of a group and keeps others is refused
   * by the host. Removing a group also drops its batchnorm channels and the fan_in
   * columns listed below. Units tied to the network's input or output (the class
   * outputs) are in no group. Groups are numbered by their first unit (layer order,
   * then unit). */
  int n_groups;
  const int *group_n_units;            /* [group] units it removes (>= 1) */
  const int *const *group_unit_layer;  /* [group][i < group_n_units] index into layers */
  const int *const *group_unit;        /* [group][i] the unit of that layer */
  const int *group_n_inputs;           /* [group] runs of fan_in columns that go with it */
  const int *const *group_input_layer; /* [group][i < group_n_inputs] index into layers */
  /* [group][i] the first column of the run in every row of that layer, and [group][i]
   * its length: k*k per input channel of a conv2d, H*W per channel after a flatten of an
   * HxW map, 1 per channel into a dense layer */
  const int *const *group_input_column;
  const int *const *group_input_columns;
  const int *const *unit_group; /* [layer][unit] its group; -1 = in none (never removed) */
  /* [layer] the batchnorm node that normalises layers[k]'s outputs, or -1 */
  const int *layer_norm_node;
  /* [node] a batchnorm node's scale gamma and shift beta (C each); NULL for other nodes */
  const float *const *node_norm_scale;
  const float *const *node_norm_shift;
} PrunusModelView;

/* What a criterion asks the host to compute on calibration data. */
enum {
  PRUNUS_NEED_WEIGHTS = 1u << 0,             /* nothing but the model view */
  PRUNUS_NEED_LOSS_GRAD = 1u << 1,           /* dL/dw, mean over each calibration batch */
  PRUNUS_NEED_LOSS_GRAD_SAMPLE = 1u << 2,    /* dL/dw of each sample separately */
  PRUNUS_NEED_OUTNORM_GRAD_SAMPLE = 1u << 3, /* d||f(x)||^2/dw of each sample (MAS) */
  PRUNUS_NEED_ACTIVATIONS = 1u << 4,         /* each layer's unit outputs after its ReLU */
  /* revision 3 (ask only when PRUNUS_HOST_REVISION >= 3): */
  /* each layer's input as the layer multiplies it, per batch: dense (batch,
   * fan_in); conv2d the im2col patches (batch * positions, fan_in), zero padding
   * included. The first layer's is the (normalised) network input. */
  PRUNUS_NEED_INPUTS = 1u << 5,
  /* host-reduced over the whole calibration pass, one step: per layer and input
   * j, the sum over rows (samples x positions) of x_j^2 */
  PRUNUS_NEED_INPUT_SUMSQ = 1u << 6,
  /* host-reduced, one step: per layer the Gram matrix X^T X (fan_in, fan_in)
   * summed over the rows of the pass */
  PRUNUS_NEED_INPUT_GRAM = 1u << 7,
  /* A modifier, not data: calibrate and prune one layer at a time, in network
   * order, each on the model as earlier layers were pruned (and rewritten by
   * update()) in this round, as SparseGPT and Wanda do. Needs layer scope. */
  PRUNUS_NEED_LAYERWISE = 1u << 8,
  /* revision 5 (ask only when PRUNUS_HOST_REVISION >= 5): host-reduced, one step:
   * per layer the cross product X^T X0 (fan_in, fan_in) summed over the rows of the
   * pass, X the layer's inputs as for INPUT_GRAM and X0 the inputs the same rows
   * gave the layer in the network as it was when this round began (before any of
   * its pruning, batchnorm statistics included). With PRUNUS_NEED_LAYERWISE that
   * pairs what the pruned upstream feeds the layer with what the unpruned network
   * fed it, so a criterion can rebuild the layer's original output X0 W^T from X:
   * the least-squares weights are W C^T (X^T X)^-1 with C = X^T X0 (sparsegpt's
   * target = "original"). When the round removes whole units, the copy loses them
   * too (X and X0 keep the same columns), so from then on X0 is what that copy
   * gives without them. Without LAYERWISE, X0 = X. */
  PRUNUS_NEED_INPUT_CROSS = 1u << 9,
};

/* What a criterion fills in. */
enum {
  PRUNUS_SCORES_WEIGHT = 1u << 0, /* one score per weight */
  PRUNUS_SCORES_UNIT = 1u << 1,   /* one score per unit (neuron / channel) */
  /* revision 4 (produce only when PRUNUS_HOST_REVISION >= 4): one score per channel
   * group (PrunusModelView.n_groups); a granularity that ranks groups uses it instead of
   * aggregating the unit scores of the group's members */
  PRUNUS_SCORES_GROUP = 1u << 2,
};

/* One calibration step: a batch (or one sample, for the per-sample needs). Arrays
 * are indexed like PrunusModelView.layers. */
typedef struct {
  int batch;                      /* samples behind this step (1 for per-sample needs) */
  uint32_t kind;                  /* the single PRUNUS_NEED_* this step carries */
  const float *const *grads;      /* [layer] (n_units, fan_in): the gradient of kind, or NULL */
  const float *const *bias_grads; /* [layer] (n_units), or NULL */
  /* [layer] (batch, n_units, positions): the unit outputs after the ReLU that
   * follows the layer (or the raw outputs when none follows); for
   * PRUNUS_NEED_ACTIVATIONS steps, else NULL. */
  const float *const *activations;

  /* ---- appended in revision 3: read only when PRUNUS_HOST_REVISION >= 3 ---- */

  /* PRUNUS_NEED_LAYERWISE: the one layer this pass calibrates (the input arrays
   * below are indexed by layer as always, but only its entry is set, the others
   * NULL; the gradient and activation arrays hold every layer's); -1 for a pass
   * over the whole model. */
  int layer;
  /* [layer] rows behind the input arrays: samples x positions of this batch
   * (INPUTS) or of the whole pass (INPUT_SUMSQ, INPUT_GRAM, INPUT_CROSS); NULL for
   * other kinds */
  const int64_t *input_rows;
  /* [layer] (input_rows, fan_in) for PRUNUS_NEED_INPUTS steps, else NULL */
  const float *const *inputs;
  /* [layer] (fan_in) sum of x_j^2 for PRUNUS_NEED_INPUT_SUMSQ steps, else NULL */
  const double *const *input_sumsq;
  /* [layer] (fan_in, fan_in) X^T X for PRUNUS_NEED_INPUT_GRAM steps, else NULL */
  const double *const *input_gram;

  /* ---- appended in revision 5: read only when PRUNUS_HOST_REVISION >= 5 ---- */

  /* [layer] (fan_in, fan_in) X^T X0, row i column j = sum over rows of x_i x0_j, for
   * PRUNUS_NEED_INPUT_CROSS steps (each after the INPUT_GRAM step of its pass, when
   * both are asked), else NULL */
  const double *const *input_cross;
} PrunusCalibStep;

/* Score buffers the host allocates (zeroed) and the criterion fills. A pointer
 * is NULL when the criterion's produces() does not include its kind. */
typedef struct {
  float *const *weight_scores; /* [layer] (n_units, fan_in) */
  float *const *unit_scores;   /* [layer] (n_units) */

  /* ---- appended in revision 3: read only when PRUNUS_HOST_REVISION >= 3 ---- */

  /* PRUNUS_NEED_LAYERWISE: the one layer to score in this call (the plan that
   * follows removes from it alone); -1 = every layer */
  int layer;

  /* ---- appended in revision 4: read only when PRUNUS_HOST_REVISION >= 4 ---- */

  /* (n_groups) one score per channel group, or NULL when the criterion's produces()
   * does not include PRUNUS_SCORES_GROUP */
  float *group_scores;
} PrunusScores;

typedef enum {
  PRUNUS_SCOPE_GLOBAL = 0, /* rank across all prunable layers */
  PRUNUS_SCOPE_LAYER = 1,  /* rank within each layer */
} PrunusScope;

/* What to remove this round. */
typedef struct {
  PrunusScope scope;
  /* [layer] fraction of that layer's remaining prunable elements to remove this
   * round (layer scope), or the weights applied to the global amount (1 = the
   * global rate, 0.5 = half rate; global scope); 0 for excluded layers. */
  const double *layer_amount;
  double amount;              /* global scope: fraction of all remaining elements */
  const double *max_sparsity; /* [layer] cap on the layer's total sparsity (0..1) */

  /* ---- appended in revision 3: read only when PRUNUS_HOST_REVISION >= 3 ---- */

  int round;     /* this round, 1 .. rounds */
  int rounds;    /* the schedule's rounds */
  double target; /* the sparsity the whole schedule asks for (after the last round) */
  /* PRUNUS_NEED_LAYERWISE: the one layer this plan is for (layer_amount is 0 for
   * every other); -1 = every layer */
  int layer;
  /* The granularity's fixed pattern (its pattern() op): at most pattern_n alive of
   * every pattern_m consecutive weights along fan_in; 0 and 0 = none. */
  int pattern_n, pattern_m;
} PrunusPlanRequest;

/* Decisions the granularity writes; the host allocates (zeroed) and applies them. */
typedef struct {
  uint8_t *const *remove_weights; /* [layer] (n_units, fan_in): 1 = prune that weight */
  uint8_t *const *remove_units;   /* [layer] (n_units): 1 = remove the whole unit */
} PrunusPlan;

/* What a check() op is told of the experiment besides the model (revision 6; a
 * host-to-plugin struct, G2: it grows by appending). */
typedef struct {
  PrunusScope scope; /* prune.schedule.scope */
  int rounds;        /* the schedule's rounds */
  double target;     /* the sparsity the whole schedule asks for (after the last round) */
  /* the granularity's fixed pattern (its pattern() op): pattern_n of every pattern_m
   * weights along fan_in; 0 and 0 = none */
  int pattern_n, pattern_m;
  uint32_t needs;    /* the criterion's needs() */
  uint32_t produces; /* the criterion's produces() */
  /* the granularity's accepts(). One that accepts PRUNUS_SCORES_UNIT or
   * PRUNUS_SCORES_GROUP ranks whole units (the shipped neuron and channel), whose
   * removal shrinks the layers; one that accepts only PRUNUS_SCORES_WEIGHT masks
   * single weights (weight, nm) and leaves every shape as it is. */
  uint32_t accepts;
  /* the experiment's plugin names (prune.criterion, .granularity, .retrain) */
  const char *criterion, *granularity, *retrain;

  /* ---- appended in revision 7: read when PRUNUS_HOST_REVISION(services) >= 7 ---- */

  /* What the rewind service will find: theta0_kept is 1 when θ0 is kept (the network
   * is pretrained by this run or its pretraining cache), 0 when it comes from
   * prune.pretrained, which holds no θ; rewind_epoch is the k > 0 whose θk is kept
   * as well (prune.rewind_epoch), 0 for none. */
  int theta0_kept;
  int rewind_epoch;
} PrunusCheckInfo;

/* ------------------------------------------------------------------------ */
/* Host services: an append-only table (G2). The host fills every member it has
 * except the retrain services of other kinds (see below). The table stays valid
 * until destroy(). */
typedef struct {
  uint32_t abi_version; /* PRUNUS_PLUGIN_ABI_VERSION of the host */
  uint32_t size;        /* sizeof(PrunusHostServices) of the host: see PRUNUS_HOST_HAS */

  /* Logging, prefixed by the host with the plugin's kind and name. MAY be called
   * from create() until destroy() returns. */
  void (*log)(PrunusHost *host, PrunusLogLevel level, const char *fmt, ...)
      __attribute__((format(printf, 3, 4)));
  /* Record the reason for the failure the plugin is about to return; the last
   * call before the failing return wins. */
  void (*set_error)(PrunusHost *host, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

  /* Settings of the plugin's config group (e.g. prune.criterion). Each returns 0
   * and writes *out (the default when the key is absent), or returns -1 with an
   * error already recorded (wrong type, out of range). Reading marks the key used.
   * Strings are valid until destroy(). Called from create() (settings read
   * later are still reported as unknown keys). */
  int (*get_int)(PrunusHost *host, const char *key, int64_t defval, int64_t *out);
  int (*get_double)(PrunusHost *host, const char *key, double defval, double *out);
  int (*get_bool)(PrunusHost *host, const char *key, int defval, int *out);
  int (*get_string)(PrunusHost *host, const char *key, const char *defval, const char **out);
  /* A string that must be one of choices (NULL-terminated): *out = its index. */
  int (*get_choice)(PrunusHost *host, const char *key, const char *const *choices, int defval,
                    int *out);

  /* A seeded stream of this instance (seeded from the config seed and the plugin
   * name, re-seeded at the start of every round). */
  uint64_t (*rng_u64)(PrunusHost *host);
  double (*rng_uniform)(PrunusHost *host); /* [0, 1) */

  /* The model as it is now. Valid until the next call that changes it. */
  const PrunusModelView *(*model)(PrunusHost *host);

  /* Retrain services: train, rewind, reinit and evaluate are NULL for criterion
   * and granularity plugins; pretrain_epochs and pretrain_lr are there for all. */
  /* Train `epochs` epochs with the config's optimizer at base rate lr (<= 0: the
   * config's train.lr). schedule_offset/schedule_epochs place the run on the LR
   * schedule: 0 and 0 = a fresh schedule of `epochs`; offset k of total E replays
   * the pretraining schedule from epoch k (learning-rate rewinding); k must be in
   * [0, E) (an error otherwise). Masks hold. */
  int (*train)(PrunusHost *host, int epochs, double lr, double schedule_offset,
               int schedule_epochs);
  /* Every parameter (surviving weights, biases, batchnorm scales and shifts) back to
   * its value at pretraining epoch `epoch` (0 = initialisation, θ0; k in [1,
   * train.epochs] = θk, kept when prune.rewind_epoch = k; none when the network came
   * from prune.pretrained). Masks hold; batchnorm running statistics are not rewound;
   * optimizer state is reset. An epoch not kept is an error, already recorded. */
  int (*rewind)(PrunusHost *host, int epoch);
  /* Every parameter re-drawn as the initialiser draws it at the start, with seed;
   * masks hold. */
  int (*reinit)(PrunusHost *host, uint64_t seed);
  /* Validation loss and accuracy of the model now (NaN when there is no split). */
  int (*evaluate)(PrunusHost *host, double *val_loss, double *val_accuracy);
  /* The config's pretraining length (train.epochs) and base rate. */
  int (*pretrain_epochs)(PrunusHost *host);
  double (*pretrain_lr)(PrunusHost *host);

  /* ---- appended in revision 2: check with PRUNUS_HOST_HAS before use ---- */

  /* PRUNUS_PLUGIN_REVISION of the host; read it through PRUNUS_HOST_REVISION. */
  uint32_t revision;
  /* get_int / get_double that also check the value: 0 and *out set when it lies
   * in [min, max] (both ends included; INT64_MIN / INT64_MAX, -HUGE_VAL / HUGE_VAL
   * for no bound; a double MUST also be finite). An absent key gives defval
   * unchecked, so a default outside the range (e.g. INT64_MIN) can mean "not
   * set". Otherwise -1 with an error recorded naming the key, its file:line, the
   * allowed range and the value found. For every kind of plugin. */
  int (*get_int_range)(PrunusHost *host, const char *key, int64_t defval, int64_t min, int64_t max,
                       int64_t *out);
  int (*get_double_range)(PrunusHost *host, const char *key, double defval, double min, double max,
                          double *out);

  /* ---- appended in revision 3: check with PRUNUS_HOST_HAS before use ---- */

  /* The request the granularity's plan() gets after this round's (or, layerwise,
   * this layer's) score(): so that a criterion that picks a mask itself (per
   * output row, or jointly with its weight updates) picks what the plan removes.
   * From score() and update(): this round's; from create(): the schedule's (round
   * 1's amounts, layer -1, pattern 0 and 0: the granularity is not created yet).
   * Valid until the call returns; NULL from a host that runs no schedule (a test
   * harness). For criterion and granularity plugins; NULL for retrain plugins. */
  const PrunusPlanRequest *(*plan_request)(PrunusHost *host);
  /* Write the surviving weights of layers[layer], (n_units, fan_in): the host
   * copies w where the mask is 1 (pruned weights stay 0). Only from the
   * criterion's update() for the layer it was called for; anything else, or a
   * non-finite value, returns -1 with the error recorded. For criteria; NULL for
   * other kinds. */
  int (*set_weights)(PrunusHost *host, int layer, const float *w);
  /* Dense linear algebra through the host's LAPACK (so a plugin links no BLAS).
   * a is (n, n) row-major, symmetric positive definite, both triangles set.
   * cholesky: a = U, upper triangular with A = U^T U (strict lower triangle 0).
   * spd_inverse: a = A^-1, both triangles. When A is not positive definite
   * (numerically): -1, a undefined, and an error recorded naming the leading
   * minor that failed, for the plugin to replace with its own (e.g. naming the
   * layer) or to retry with more dampening. For every kind of plugin. */
  int (*cholesky)(PrunusHost *host, int n, double *a);
  int (*spd_inverse)(PrunusHost *host, int n, double *a);
} PrunusHostServices;

/* Whether the host's services table holds member (G2): a member appended after
 * revision 1 MUST NOT be used without this check. A member it holds is non-NULL
 * unless documented otherwise (the retrain services, plan_request, set_weights). */
#define PRUNUS_HOST_HAS(services, member) \
  ((services)->size >= offsetof(PrunusHostServices, member) + sizeof((services)->member))

/* The host's revision: a member another host struct gained in revision N MAY be
 * used only when this is >= N (G2). */
#define PRUNUS_HOST_REVISION(services) \
  (PRUNUS_HOST_HAS(services, revision) ? (services)->revision : 1u)

/* ------------------------------------------------------------------------ */
/* Per-kind ops tables (static const in the plugin; the host copies ops_size
 * bytes of it at load, G1). Ops appended in a later revision MUST be optional:
 * NULL means the behaviour before they existed. */

typedef struct {
  /* PRUNUS_NEED_* flags: what observe() will receive. 0 or PRUNUS_NEED_WEIGHTS =
   * no calibration pass. Required. Called after create() (the host checks the
   * needs against the model and the schedule: a bit it does not know, inputs of a
   * layer type that has none, layerwise with global scope are errors) and at the
   * start of every round's scoring, before that round's first observe(); MUST
   * return the same value for an instance. */
  uint32_t (*needs)(void *state);
  /* PRUNUS_SCORES_* flags this instance fills. Required. Called after create()
   * and every round; MUST return the same value for an instance. */
  uint32_t (*produces)(void *state);
  /* Called once per calibration step (batch, or sample for per-sample needs, or
   * once per pass for the host-reduced needs), `calib_batches` batches of
   * `calib_batch` samples from the training split, every round before score()
   * (layerwise: before each layer's score()). MAY be NULL when needs() asks for
   * weights only. */
  int (*observe)(void *state, const PrunusModelView *model, const PrunusCalibStep *step);
  /* Required. Called once per round after the calibration pass (layerwise: once
   * per prunable layer, scores->layer naming it): fill scores (higher = more
   * important). Scores of already-pruned weights are ignored by the host.
   * Non-finite scores stop the pipeline with an error naming the plugin and
   * layer. */
  int (*score)(void *state, const PrunusModelView *model, PrunusScores *scores);

  /* ---- appended in revision 3 (optional: NULL = never called) ---- */

  /* Called right after a plan was applied, once per prunable layer at a non-zero
   * rate: layerwise (PRUNUS_NEED_LAYERWISE) after that layer's plan, before the
   * next layer is calibrated; otherwise after the round's plan, layer by layer in
   * network order. The model's mask of `layer` is final for the round; the
   * criterion MAY rewrite the layer's surviving weights with
   * services->set_weights (OBS/SparseGPT-style reconstruction). */
  int (*update)(void *state, const PrunusModelView *model, int layer);

  /* ---- appended in revision 6 (optional: NULL = nothing to check) ---- */

  /* Whether this criterion can work on this model in this experiment, asked before
   * any data is read or any training starts: return non-zero after set_error()
   * naming what to change (a layer type it cannot score, a missing batchnorm, a
   * granularity it cannot work with), and the run stops at once instead of failing
   * in round 1 after pretraining. Called once per instance, after create() and the
   * host's own checks (needs, scores, scope); model is the architecture as
   * configured: its layers, graph, groups, batchnorm nodes and which layers are
   * prunable are the run's, its weights are not yet trained (judge shapes, never
   * values). The host also calls it on the instance it creates for checking and
   * destroys unused, so keep nothing from it that later calls need. It gets no host
   * or services: keep them in the state from create() to call set_error(). Only a
   * revision-6 host calls it, so every member up to revision 6 is there. */
  int (*check)(void *state, const PrunusModelView *model, const PrunusCheckInfo *info);
} PrunusCriterionOps;

typedef struct {
  /* PRUNUS_SCORES_* the granularity needs from the criterion (at least one of them
   * when it can aggregate). Required. Called after create(). */
  uint32_t (*accepts)(void *state);
  /* Required. Called once per round after the criterion's score() (layerwise:
   * once per prunable layer, req->layer naming it): fill plan for req from scores. Units removed
   * are removed physically by the host (matrices shrink; the next layer loses the matching inputs).
   * A plan that would leave a layer with no alive weight or unit MUST be refused (return -1 after
   * set_error naming the layer). */
  int (*plan)(void *state, const PrunusModelView *model, const PrunusScores *scores,
              const PrunusPlanRequest *req, PrunusPlan *plan);

  /* ---- appended in revision 3 (optional: NULL = no fixed pattern) ---- */

  /* A fixed-pattern granularity (N:M) writes *n (alive weights kept) and *m
   * (group size) of its pattern along fan_in; the host then knows the most a plan
   * can remove (1 - n/m of each layer), warns when the schedule asks for more, and
   * passes the pattern to criteria in the plan request. Leaving both 0 = none.
   * Called once after create(); MUST give the same answer for an instance. */
  void (*pattern)(void *state, int *n, int *m);

  /* ---- appended in revision 6 (optional: NULL = nothing to check) ---- */

  /* As PrunusCriterionOps.check, for the granularity (e.g. a model with no layer of
   * the kind it removes). */
  int (*check)(void *state, const PrunusModelView *model, const PrunusCheckInfo *info);
} PrunusGranularityOps;

typedef struct {
  /* Required. Called once per round (round = 1, 2, ...) after the plan is
   * applied. Uses the host's retrain services (train, rewind, reinit, evaluate). */
  int (*retrain)(void *state, int round);

  /* ---- appended in revision 7 (optional: NULL = nothing to check) ---- */

  /* As PrunusCriterionOps.check, for the retrain plugin: e.g. a rewind to weights the
   * run will not keep (info->theta0_kept, info->rewind_epoch). Called after the
   * criterion's and the granularity's. Only a revision-7 host calls it, so every
   * member up to revision 7 is there. */
  int (*check)(void *state, const PrunusModelView *model, const PrunusCheckInfo *info);
} PrunusRetrainOps;

/* ------------------------------------------------------------------------ */
/* The descriptor. Fields are never reordered; new ones go at the end and the
 * host reads only those that fit in `size` (G1). A static const object. */
typedef struct {
  uint32_t abi_version; /* MUST be PRUNUS_PLUGIN_ABI_VERSION */
  uint32_t size;        /* MUST be sizeof(PrunusPluginDesc) */
  PrunusPluginKind kind;
  const char *name;    /* [a-z0-9_-]+, unique per kind; what configs name */
  const char *version; /* the plugin's own version, e.g. "1.0.0"; not empty */
  const char *summary; /* one line for `prunus plugins`; not empty */
  /* Required. Create an instance. host/services stay valid until destroy().
   * *state MAY be left NULL on success when the plugin keeps no state. */
  int (*create)(PrunusHost *host, const PrunusHostServices *services, void **state);
  /* MAY be NULL. Called once per successful create(). */
  void (*destroy)(void *state);
  /* Exactly one of these matches kind and is non-NULL; the others MUST be NULL. */
  const PrunusCriterionOps *criterion;
  const PrunusGranularityOps *granularity;
  const PrunusRetrainOps *retrain;

  /* ---- appended in revision 2 (absent or 0 in older plugins) ---- */

  /* sizeof the ops table the kind's member points to, as the plugin was built:
   * the host reads no more of it (G1). 0 = revision 1's size of that table, which
   * is right for a plugin that uses no op appended after revision 1; one that
   * does MUST set it (PRUNUS_PLUGIN_OPS sets it with the pointer). */
  uint32_t ops_size;
} PrunusPluginDesc;

/* Sets the kind's ops member and ops_size together in a descriptor initializer:
 *   .kind = PRUNUS_PLUGIN_CRITERION, PRUNUS_PLUGIN_OPS(criterion, my_ops), */
#define PRUNUS_PLUGIN_OPS(member, table) .member = &(table), .ops_size = sizeof(table)

/* The entry point: the descriptor at index, or NULL past the last one. Called
 * at load with 0, 1, ... until NULL (at most 256); MUST return the same pointer
 * for an index every time. Declared here (with default visibility) so that a
 * definition with another signature fails to compile and one that forgets
 * PRUNUS_PLUGIN_EXPORT is still exported. */
PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index);
typedef const PrunusPluginDesc *(*PrunusPluginDescribeFn)(uint32_t index);

#ifdef __cplusplus
}
#endif

#endif /* PRUNUS_PLUGIN_H */
