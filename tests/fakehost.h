/* fakehost.h: a fake prunus host for plugin tests. It implements the plugin.h
 * services of revision 2 from an in-memory settings table, a seeded RNG, a
 * hand-made model view and retrain services that only record their calls. */
#ifndef PRUNUS_FAKEHOST_H
#define PRUNUS_FAKEHOST_H

#include <glib.h>
#include <prunus/plugin.h>

typedef enum {
  FAKEHOST_CALL_TRAIN,
  FAKEHOST_CALL_REWIND,
  FAKEHOST_CALL_REINIT,
  FAKEHOST_CALL_EVALUATE,
} FakeHostCallKind;

/* One recorded retrain service call; only the fields of its kind are set. */
typedef struct {
  FakeHostCallKind kind;
  int epochs;             /* train */
  double lr;              /* train */
  double schedule_offset; /* train */
  int schedule_epochs;    /* train */
  int epoch;              /* rewind */
  uint64_t seed;          /* reinit */
} FakeHostCall;

/* (transfer full) A host whose rng is seeded with seed; with_retrain fills the
 * retrain services (NULL otherwise, as for criteria and granularities). */
PrunusHost *fakehost_new(uint64_t seed, gboolean with_retrain);
void fakehost_free(PrunusHost *host);
const PrunusHostServices *fakehost_services(PrunusHost *host);

/* Settings: value is parsed on read like a libconfig scalar ("3", "0.5", "true",
 * "l2"); reading with the wrong type fails with a message naming the key. */
void fakehost_set(PrunusHost *host, const char *key, const char *value);
/* NULL when every key set was read, else the first unread key. */
const char *fakehost_unread_key(PrunusHost *host);
/* The last message given to set_error (NULL when none); cleared by _clear_error. */
const char *fakehost_error(PrunusHost *host);
void fakehost_clear_error(PrunusHost *host);

/* Make the services table a revision-1 host's: size ends after pretrain_lr and
 * the members appended since are NULL (a plugin that reads them without checking
 * PRUNUS_HOST_HAS crashes). */
void fakehost_set_revision1(PrunusHost *host);
/* Make the services table that of a host of revision (3 .. this header's): revision 3's
 * services present but inert (no plan request; set_weights, cholesky and spd_inverse
 * fail), enough for create() and needs(). */
void fakehost_set_revision(PrunusHost *host, uint32_t revision);

void fakehost_set_model(PrunusHost *host, const PrunusModelView *view);
void fakehost_set_pretrain(PrunusHost *host, int epochs, double lr);

guint fakehost_n_calls(PrunusHost *host);
const FakeHostCall *fakehost_call(PrunusHost *host, guint i);

/* The host's rng: splitmix64 from seed (tests draw the same stream to compare). */
uint64_t fakehost_splitmix64(uint64_t *state);

#endif
