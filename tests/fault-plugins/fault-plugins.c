/* fault-plugins.c: fault-injection fixtures for tests/jobs/test_faults.c. Three plugins
 * (criterion "fault", granularity "fault-plan", retrain "fault-retrain") that work
 * (|w| scores, remove nothing, one epoch of training) until the call named by the
 * environment variable PRUNUS_TEST_FAULT = "FAULT:CALL:ROUND", where they commit it:
 *   FAULT = segv | bus | fpe | ill | abort | exit0 | exit3 | stack (unbounded recursion)
 *           | hang (waits for a signal: the interrupt and lock tests)
 *           | empty (plan only: a plan that removes every weight of the first layer, which
 *             the host must refuse) | offset (retrain only: train() at schedule offset 5 of
 *             2 epochs, which the host must refuse) | write (score only: set_weights on
 *             view layer 1 outside update(), which the host must refuse)
 *   CALL  = create (the criterion's) | observe | score (criterion) | plan | retrain
 *   ROUND = the round of that call (ignored for create)
 * The environment, not the config, so that the same command reruns without the fault
 * and resumes. A real fault where the machine gives one (SEGV, BUS from a mapping
 * past the end of a file, ILL from a trap instruction, stack overflow); SIGFPE is
 * raised, since integer division by zero is undefined behaviour the sanitizers stop
 * before the CPU does. */
#include <prunus/plugin.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const char *const faults[] = {"none",  "segv",  "bus",  "fpe",   "ill",    "abort", "exit0",
                                     "exit3", "stack", "hang", "empty", "offset", "write", NULL};
enum {
  F_NONE,
  F_SEGV,
  F_BUS,
  F_FPE,
  F_ILL,
  F_ABORT,
  F_EXIT0,
  F_EXIT3,
  F_STACK,
  F_HANG,
  F_EMPTY,
  F_OFFSET,
  F_WRITE
};

typedef struct {
  int fault;
  char call[16];
  int round;
  int calls; /* score() or plan() calls so far = the round */
  PrunusHost *host;
  const PrunusHostServices *svc;
} FaultState;

/* PRUNUS_TEST_FAULT parsed into s; no fault when unset or malformed. */
static void read_fault(FaultState *s) {
  const char *env = getenv("PRUNUS_TEST_FAULT");
  char name[16] = "";
  s->fault = F_NONE;
  if (!env || sscanf(env, "%15[a-z0-9]:%15[a-z]:%d", name, s->call, &s->round) != 3) return;
  for (int i = 0; faults[i]; i++)
    if (!strcmp(faults[i], name)) s->fault = i;
}

static int at(const FaultState *s, const char *call, int round) {
  return s->fault != F_NONE && !strcmp(s->call, call) && s->round == round;
}

static volatile int sink;
static volatile int depth_limit = -1; /* never reached: the stack runs out first */

static int recurse(int n) {
  volatile char pad[1024];
  pad[0] = (char)n;
  if (n == depth_limit) return n;
  return recurse(n + 1) + pad[0];
}

static void commit(int fault) {
  switch (fault) {
  case F_SEGV:
    *(volatile int *)(uintptr_t)sink = 1; /* sink is 0: a write to address 0 */
    break;
  case F_BUS: {
    /* a mapping past the end of an empty file: touching it is SIGBUS */
    FILE *f = tmpfile();
    volatile char *p = f ? mmap(NULL, 4096, PROT_READ, MAP_SHARED, fileno(f), 0) : MAP_FAILED;
    if (p != MAP_FAILED) sink = p[0];
    raise(SIGBUS); /* where no mapping could be made */
    break;
  }
  case F_FPE:
    raise(SIGFPE);
    break;
  case F_ILL:
    __builtin_trap();
  case F_ABORT:
    abort();
  case F_EXIT0:
    exit(0);
  case F_EXIT3:
    exit(3);
  case F_STACK:
    sink = recurse(0);
    break;
  case F_HANG:
    for (;;) pause();
  default:
    break;
  }
}

static int fault_create(PrunusHost *host, const PrunusHostServices *svc, void **state) {
  FaultState *s = calloc(1, sizeof *s);
  if (!s) return -1;
  *state = s;
  s->host = host, s->svc = svc;
  read_fault(s);
  return 0;
}

static int crit_create(PrunusHost *host, const PrunusHostServices *svc, void **state) {
  int rc = fault_create(host, svc, state);
  FaultState *s = *state;
  if (s && s->fault != F_NONE && !strcmp(s->call, "create")) commit(s->fault);
  return rc;
}

static void fault_destroy(void *state) { free(state); }

/* ---- criterion "fault" ---- */

static uint32_t crit_needs(void *state) {
  FaultState *s = state;
  return s->fault != F_NONE && !strcmp(s->call, "observe") ? PRUNUS_NEED_LOSS_GRAD
                                                           : PRUNUS_NEED_WEIGHTS;
}

static uint32_t crit_produces(void *state) {
  (void)state;
  return PRUNUS_SCORES_WEIGHT;
}

static int crit_observe(void *state, const PrunusModelView *model, const PrunusCalibStep *step) {
  FaultState *s = state;
  (void)model, (void)step;
  if (at(s, "observe", s->calls + 1)) commit(s->fault);
  return 0;
}

static int crit_score(void *state, const PrunusModelView *model, PrunusScores *scores) {
  FaultState *s = state;
  s->calls++;
  if (at(s, "score", s->calls) && s->fault == F_WRITE)
    return s->svc->set_weights(s->host, 1, model->layers[1].weights) == 0 ? 0 : -1;
  if (at(s, "score", s->calls)) commit(s->fault);
  for (int l = 0; l < model->n_layers; l++)
    for (size_t i = 0; i < model->layers[l].n_weights; i++) {
      float w = model->layers[l].weights[i];
      scores->weight_scores[l][i] = w < 0 ? -w : w;
    }
  return 0;
}

static const PrunusCriterionOps crit_ops = {
    .needs = crit_needs, .produces = crit_produces, .observe = crit_observe, .score = crit_score};

/* ---- granularity "fault-plan": removes nothing ---- */

static uint32_t plan_accepts(void *state) {
  (void)state;
  return PRUNUS_SCORES_WEIGHT;
}

static int plan_plan(void *state, const PrunusModelView *model, const PrunusScores *scores,
                     const PrunusPlanRequest *req, PrunusPlan *plan) {
  FaultState *s = state;
  (void)scores, (void)req;
  if (at(s, "plan", ++s->calls) && s->fault == F_EMPTY) {
    for (size_t i = 0; i < model->layers[0].n_weights; i++) plan->remove_weights[0][i] = 1;
    return 0;
  }
  if (at(s, "plan", s->calls)) commit(s->fault);
  return 0;
}

static const PrunusGranularityOps plan_ops = {.accepts = plan_accepts, .plan = plan_plan};

/* ---- retrain "fault-retrain": one epoch ---- */

typedef struct {
  FaultState f;
  PrunusHost *host;
  const PrunusHostServices *svc;
} RetrainState;

static int retrain_create(PrunusHost *host, const PrunusHostServices *svc, void **state) {
  void *inner = NULL;
  int rc = fault_create(host, svc, &inner);
  RetrainState *r = calloc(1, sizeof *r);
  if (inner) r->f = *(FaultState *)inner;
  free(inner);
  r->host = host, r->svc = svc;
  *state = r;
  return rc;
}

static int retrain_retrain(void *state, int round) {
  RetrainState *r = state;
  if (at(&r->f, "retrain", round) && r->f.fault == F_OFFSET)
    return r->svc->train(r->host, 1, 0.0, 5.0, 2);
  if (at(&r->f, "retrain", round)) commit(r->f.fault);
  return r->svc->train(r->host, 1, 0.0, 0.0, 0);
}

static const PrunusRetrainOps retrain_ops = {.retrain = retrain_retrain};

static const PrunusPluginDesc descs[] = {
    {.abi_version = PRUNUS_PLUGIN_ABI_VERSION,
     .size = sizeof(PrunusPluginDesc),
     .kind = PRUNUS_PLUGIN_CRITERION,
     .name = "fault",
     .version = "1.0.0",
     .summary = "fixture: |w| scores, then the configured fault",
     .create = crit_create,
     .destroy = fault_destroy,
     PRUNUS_PLUGIN_OPS(criterion, crit_ops)},
    {.abi_version = PRUNUS_PLUGIN_ABI_VERSION,
     .size = sizeof(PrunusPluginDesc),
     .kind = PRUNUS_PLUGIN_GRANULARITY,
     .name = "fault-plan",
     .version = "1.0.0",
     .summary = "fixture: removes nothing, then the configured fault",
     .create = fault_create,
     .destroy = fault_destroy,
     PRUNUS_PLUGIN_OPS(granularity, plan_ops)},
    {.abi_version = PRUNUS_PLUGIN_ABI_VERSION,
     .size = sizeof(PrunusPluginDesc),
     .kind = PRUNUS_PLUGIN_RETRAIN,
     .name = "fault-retrain",
     .version = "1.0.0",
     .summary = "fixture: one epoch, then the configured fault",
     .create = retrain_create,
     .destroy = fault_destroy,
     PRUNUS_PLUGIN_OPS(retrain, retrain_ops)},
};

PRUNUS_PLUGIN_EXPORT const PrunusPluginDesc *prunus_plugin_describe(uint32_t index) {
  return index < sizeof descs / sizeof descs[0] ? &descs[index] : NULL;
}
