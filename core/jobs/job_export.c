/* job_export.c: `prunus export`: loads a checkpoint and writes it as C (with the
 * input normalisation as a lookup table) or as safetensors for PyTorch (export.c). */
#include "checkpoint.h"
#include "export.h"
#include "job.h"

/* The normalisation of the config's training split as a 256-entry table, made by
 * the very code that fills training batches, so the values are identical. */
static gboolean norm_lut_from_config(const PrunusJobOptions *o, const char *checkpoint,
                                     const PrunusModel *m, float lut[256], GError **error) {
  PrunusJob job;
  PrunusData data = {0};
  if (!prunus_job_open_shared(&job, o, error)) return FALSE;
  if (!prunus_job_load_data_for(&job, checkpoint, m, &data, error)) {
    prunus_job_close(&job);
    return FALSE;
  }
  uint8_t pixels[256], labels[256] = {0};
  int idx[256];
  for (int v = 0; v < 256; v++) pixels[v] = (uint8_t)v, idx[v] = v;
  PrunusDataset *ramp = prunus_dataset_new_from_data(256, 1, 1, 1, 2, pixels, labels);
  uint8_t y[256];
  prunus_dataset_fill_batch(ramp, &data.norm, idx, 256, lut, y);
  prunus_dataset_free(ramp);
  prunus_data_clear(&data);
  prunus_job_close(&job);
  return TRUE;
}

gboolean prunus_job_export(const char *checkpoint, const PrunusJobOptions *o,
                           PrunusExportFormat format, const char *out, GError **error) {
  if (format == PRUNUS_EXPORT_C && (!o || !o->config_path)) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID,
                "exporting C needs the config: its training split gives the input normalisation");
    return FALSE;
  }
  PrunusModel *m = prunus_checkpoint_load(checkpoint, 1, NULL, NULL, error);
  if (!m) return FALSE;
  gboolean ok;
  if (format == PRUNUS_EXPORT_C) {
    float lut[256];
    ok = norm_lut_from_config(o, checkpoint, m, lut, error) &&
         prunus_export_c(m, lut, out, checkpoint, o->quiet, NULL, error);
  } else {
    ok = prunus_export_safetensors(m, out, o && o->quiet, error);
  }
  prunus_model_free(m);
  return ok;
}
