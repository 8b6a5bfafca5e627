/* plugin.h: the one header a prunus plugin includes. It defines the plugin ABI:
 * the exported entry point, the descriptor, the per-kind ops and the host services.
 *
 * Contract words: MUST / MAY as in RFC 2119. "host" = libprunus; "plugin" = the
 * shared object. Plain C, no GLib or libconfig types, so a plugin builds with
 * nothing but this header.
 *
 * Life of a plugin instance:
 *   1. The host dlopen()s the .so (RTLD_NOW | RTLD_LOCAL) and calls
 *      prunus_plugin_describe(0), (1), ... until NULL; each result is a static
 *      descriptor. The host checks abi_version (exact match), size, kind, name.
 *   2. create(host, services, &state): the plugin reads its settings through
 *      services->get_* (each key in its config group that it never reads is an
 *      error the host reports with file:line) and allocates its state.
 *   3. The kind's ops are called (see each ops table for when).
 *   4. destroy(state) is called exactly once for every successful create(),
 *      before the host dlclose()s the library (in reverse load order).
 *
 * Errors: every function that can fail returns int (0 = success, non-zero =
 * failure) and, on failure, SHOULD first call services->set_error() with a
 * message naming what to fix. The host turns it into one error naming the plugin.
 *
 * Ownership: every pointer the host passes is (transfer none) and valid only
 * for the duration of the call, unless stated otherwise. Strings a plugin returns
 * through descriptors are static.
 */
#ifndef PRUNUS_PLUGIN_H
#define PRUNUS_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change; the host loads only an exact match. */
#define PRUNUS_PLUGIN_ABI_VERSION 1u

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
  PRUNUS_LOG_DEBUG = 0,
  PRUNUS_LOG_INFO = 1,
  PRUNUS_LOG_WARNING = 2,
} PrunusLogLevel;

/* Opaque per-instance host handle; passed back to every service. */
typedef struct PrunusHost PrunusHost;

/* ------------------------------------------------------------------------ */
/* Views the host hands to plugins (read-only). */

/* One layer with parameters (dense or conv2d), in the model's current shape. */
typedef struct {
  const char *name;      /* "1": the index in the layer sequence (PyTorch naming) */
  const char *type;      /* "dense" or "conv2d" */
  int index;             /* position in the layer sequence */
  int n_units;           /* output neurons (dense) or output channels (conv2d) */
  int fan_in;            /* weights per unit: inputs (dense) or cin*k*k (conv2d) */
  size_t n_weights;      /* n_units * fan_in */
  int positions;         /* output positions per unit and sample: 1 (dense), Ho*Wo (conv2d) */
  int prunable;          /* 0 when the config excludes this layer from pruning */
  int is_output;         /* 1 for the last layer (its units are the classes: never removed) */
  const float *weights;  /* (n_units, fan_in) */
  const float *bias;     /* (n_units) */
  const float *mask;     /* (n_units, fan_in): 1 = alive, 0 = pruned */
} PrunusLayerView;

typedef struct {
  int n_layers;                  /* layers with parameters only */
  const PrunusLayerView *layers; /* (n_layers) */
} PrunusModelView;

/* What a criterion asks the host to compute on calibration data. */
enum {
  PRUNUS_NEED_WEIGHTS = 1u << 0,         /* nothing but the model view */
  PRUNUS_NEED_LOSS_GRAD = 1u << 1,       /* dL/dw, mean over each calibration batch */
  PRUNUS_NEED_LOSS_GRAD_SAMPLE = 1u << 2,/* dL/dw of each sample separately */
  PRUNUS_NEED_OUTNORM_GRAD_SAMPLE = 1u << 3, /* d||f(x)||^2/dw of each sample (MAS) */
  PRUNUS_NEED_ACTIVATIONS = 1u << 4,     /* each layer's unit outputs after its ReLU */
};

/* What a criterion fills in. */
enum {
  PRUNUS_SCORES_WEIGHT = 1u << 0,  /* one score per weight */
  PRUNUS_SCORES_UNIT = 1u << 1,    /* one score per unit (neuron / channel) */
};

/* One calibration step: a batch (or one sample, for the per-sample needs). Arrays
 * are indexed like PrunusModelView.layers. */
typedef struct {
  int batch;                   /* samples behind this step (1 for per-sample needs) */
  uint32_t kind;               /* the single PRUNUS_NEED_* this step carries */
  const float *const *grads;   /* [layer] (n_units, fan_in): the gradient of kind, or NULL */
  const float *const *bias_grads; /* [layer] (n_units), or NULL */
  /* [layer] (batch, n_units, positions): the unit outputs after the ReLU that
   * follows the layer (or the raw outputs when none follows); for
   * PRUNUS_NEED_ACTIVATIONS steps, else NULL. */
  const float *const *activations;
} PrunusCalibStep;

/* Score buffers the host allocates (zeroed) and the criterion fills. */
typedef struct {
  float *const *weight_scores; /* [layer] (n_units, fan_in) */
  float *const *unit_scores;   /* [layer] (n_units) */
} PrunusScores;

/* ------------------------------------------------------------------------ */
/* Host services: an append-only table. New members are added at the END only;
 * a plugin MUST check `size` before using a member added after version 1. */
typedef struct {
  uint32_t abi_version;   /* PRUNUS_PLUGIN_ABI_VERSION of the host */
  uint32_t size;          /* sizeof(PrunusHostServices) of the host */

  /* Logging, prefixed by the host with the plugin's name. */
  void (*log)(PrunusHost *host, PrunusLogLevel level, const char *fmt, ...)
      __attribute__((format(printf, 3, 4)));
  /* Record the reason for the failure the plugin is about to return. */
  void (*set_error)(PrunusHost *host, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

  /* Settings of the plugin's config group (e.g. prune.criterion). Each returns 0
   * and writes *out (the default when the key is absent), or returns -1 with an
   * error already recorded (wrong type, out of range). Reading marks the key used.
   * Strings are valid until destroy(). */
  int (*get_int)(PrunusHost *host, const char *key, int64_t defval, int64_t *out);
  int (*get_double)(PrunusHost *host, const char *key, double defval, double *out);
  int (*get_bool)(PrunusHost *host, const char *key, int defval, int *out);
  int (*get_string)(PrunusHost *host, const char *key, const char *defval, const char **out);
  /* A string that must be one of choices (NULL-terminated): *out = its index. */
  int (*get_choice)(PrunusHost *host, const char *key, const char *const *choices, int defval,
                    int *out);

  /* A seeded stream of this instance (seeded from the config seed and the plugin name). */
  uint64_t (*rng_u64)(PrunusHost *host);
  double (*rng_uniform)(PrunusHost *host); /* [0, 1) */

  /* The model as it is now. Valid until the next call that changes it. */
  const PrunusModelView *(*model)(PrunusHost *host);

  /* Retrain services (only for retrain plugins; NULL for other kinds). */
  /* Train `epochs` epochs with the config's optimizer at base rate lr (<= 0: the
   * config's train.lr). schedule_offset/schedule_epochs place the run on the LR
   * schedule: 0 and 0 = a fresh schedule of `epochs`; offset k of total E replays
   * the pretraining schedule from epoch k (learning-rate rewinding). Masks hold. */
  int (*train)(PrunusHost *host, int epochs, double lr, double schedule_offset,
               int schedule_epochs);
  /* Surviving weights back to their values at pretraining epoch `epoch`
   * (0 = initialisation, θ0; k = θk, kept when prune.rewind_epoch = k). Masks hold;
   * optimizer state is reset. */
  int (*rewind)(PrunusHost *host, int epoch);
  /* Surviving weights re-drawn fresh from the initialiser with seed; masks hold. */
  int (*reinit)(PrunusHost *host, uint64_t seed);
  /* Validation loss and accuracy of the model now (NaN when there is no split). */
  int (*evaluate)(PrunusHost *host, double *val_loss, double *val_accuracy);
  /* The config's pretraining length (train.epochs) and base rate. */
  int (*pretrain_epochs)(PrunusHost *host);
  double (*pretrain_lr)(PrunusHost *host);
} PrunusHostServices;

/* ------------------------------------------------------------------------ */
/* Per-kind ops tables (static const in the plugin). */

typedef struct {
  /* PRUNUS_NEED_* flags: what observe() will receive. 0 or PRUNUS_NEED_WEIGHTS =
   * no calibration pass. Called after create(). */
  uint32_t (*needs)(void *state);
  /* PRUNUS_SCORES_* flags this instance fills. Called after create(). */
  uint32_t (*produces)(void *state);
  /* Called once per calibration step (batch, or sample for per-sample needs),
   * `calib_batches` batches of `calib_batch` samples from the training split.
   * MAY be NULL when needs() asks for weights only. */
  int (*observe)(void *state, const PrunusModelView *model, const PrunusCalibStep *step);
  /* Called once after the calibration pass: fill scores (higher = more important).
   * Scores of already-pruned weights are ignored by the host. Non-finite scores
   * stop the pipeline with an error naming the plugin and layer. */
  int (*score)(void *state, const PrunusModelView *model, PrunusScores *scores);
} PrunusCriterionOps;

typedef enum {
  PRUNUS_SCOPE_GLOBAL = 0,   /* rank across all prunable layers */
  PRUNUS_SCOPE_LAYER = 1,    /* rank within each layer */
} PrunusScope;

/* What to remove this round. */
typedef struct {
  PrunusScope scope;
  /* [layer] fraction of that layer's remaining prunable elements to remove this
   * round (layer scope), or the weights applied to the global amount (1 = the
   * global rate, 0.5 = half rate; global scope); 0 for excluded layers. */
  const double *layer_amount;
  double amount;             /* global scope: fraction of all remaining elements */
  const double *max_sparsity;/* [layer] cap on the layer's total sparsity (0..1) */
} PrunusPlanRequest;

/* Decisions the granularity writes; the host allocates (zeroed) and applies them. */
typedef struct {
  uint8_t *const *remove_weights; /* [layer] (n_units, fan_in): 1 = prune that weight */
  uint8_t *const *remove_units;   /* [layer] (n_units): 1 = remove the whole unit */
} PrunusPlan;

typedef struct {
  /* PRUNUS_SCORES_* the granularity needs from the criterion (at least one of them
   * when it can aggregate). */
  uint32_t (*accepts)(void *state);
  /* Fill plan for req from scores. Units removed are removed physically by the
   * host (matrices shrink; the next layer loses the matching inputs). A plan that
   * would leave a layer with no alive weight or unit MUST be refused (return -1
   * after set_error naming the layer). */
  int (*plan)(void *state, const PrunusModelView *model, const PrunusScores *scores,
              const PrunusPlanRequest *req, PrunusPlan *plan);
} PrunusGranularityOps;

typedef struct {
  /* Called once per round after the plan is applied. Uses the host's retrain
   * services (train, rewind, reinit, evaluate). */
  int (*retrain)(void *state, int round);
} PrunusRetrainOps;

/* ------------------------------------------------------------------------ */
/* The descriptor. Fields are never reordered; new ones go at the end and the
 * host reads only those that fit in `size`. */
typedef struct {
  uint32_t abi_version;      /* MUST be PRUNUS_PLUGIN_ABI_VERSION */
  uint32_t size;             /* MUST be sizeof(PrunusPluginDesc) */
  PrunusPluginKind kind;
  const char *name;          /* [a-z0-9-]+, unique per kind; what configs name */
  const char *version;       /* the plugin's own version, e.g. "1.0.0" */
  const char *summary;       /* one line for `prunus plugins` */
  /* Create an instance. host/services stay valid until destroy(). *state MAY be
   * NULL on success when the plugin keeps no state. */
  int (*create)(PrunusHost *host, const PrunusHostServices *services, void **state);
  /* MAY be NULL. Called once per successful create(). */
  void (*destroy)(void *state);
  /* Exactly one of these matches kind; the others MUST be NULL. */
  const PrunusCriterionOps *criterion;
  const PrunusGranularityOps *granularity;
  const PrunusRetrainOps *retrain;
} PrunusPluginDesc;

/* The entry point: the descriptor at index, or NULL past the last one. */
typedef const PrunusPluginDesc *(*PrunusPluginDescribeFn)(uint32_t index);

#ifdef __cplusplus
}
#endif

#endif /* PRUNUS_PLUGIN_H */
