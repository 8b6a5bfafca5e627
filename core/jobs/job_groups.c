/* job_groups.c: `prunus groups`: the channel groups of a config's model (core/nn/groups.h),
 * one line per group, so a user sees what structured pruning removes together. */
#include "groups.h"
#include "job.h"

#include <stdio.h>

gboolean prunus_job_groups(const PrunusJobOptions *o, GError **error) {
  PrunusJob job;
  if (!prunus_job_open_shared(&job, o, error)) return FALSE;
  PrunusModel *m = prunus_model_new(&job.rc.arch, 1, job.rc.seed, error);
  if (!m) {
    prunus_job_close(&job);
    return FALSE;
  }
  PrunusGroups *g = prunus_groups_build(m);
  int units = 0, fixed = 0;
  for (int i = 0; i < m->n_layers; i++) {
    if (!m->layers[i].ops->has_params) continue;
    for (int u = 0; u < m->layers[i].out.c; u++) {
      units++;
      fixed += prunus_groups_unit(g, i, u) < 0;
    }
  }
  printf(
      "%s: %d groups over %d units of conv2d/dense layers (out: the units removed together; "
      "bn: their batchnorm channels; in: the input channels of the layers reading them)\n",
      job.rc.name, g->n_groups, units);
  for (int k = 0; k < g->n_groups; k++) {
    char *s = prunus_groups_describe_one(g, m, k);
    printf("%s\n", s);
    g_free(s);
  }
  printf("never removed: %d units tied to the network's input or output:", fixed);
  for (int i = 0; i < m->n_layers; i++) {
    if (!m->layers[i].ops->has_params) continue;
    int n = 0;
    for (int u = 0; u < m->layers[i].out.c; u++) n += prunus_groups_unit(g, i, u) < 0;
    if (n) printf(" %s (%d)", m->layers[i].name, n);
  }
  printf("\n");
  prunus_groups_free(g);
  prunus_model_free(m);
  prunus_job_close(&job);
  return TRUE;
}
