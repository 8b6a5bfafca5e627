/* job_export.c: `prunus export`: loads a checkpoint and writes it as C (with the
 * input normalisation it was trained with, export.c) or for PyTorch (export_torch.c). */
#include "checkpoint.h"
#include "export.h"
#include "export_torch.h"
#include "job.h"
#include "safetensors.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>

/* The normalisation of a checkpoint without one in its metadata: fitted again on the
 * training split of the config (the one it was trained with, the user says), as
 * training did. */
static gboolean norm_from_config(const PrunusJobOptions *o, const char *checkpoint,
                                 const PrunusModel *m, PrunusNorm *norm, GError **error) {
  if (!o || !o->config_path) {
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID,
                "%s carries no input normalisation (it predates checkpoints that do): exporting "
                "C needs the config it was trained with, whose training split gives it",
                checkpoint);
    return FALSE;
  }
  PrunusJob job;
  PrunusData data = {0};
  if (!prunus_job_open_shared(&job, o, error)) return FALSE;
  gboolean ok = prunus_job_load_data_for(&job, checkpoint, m, NULL, &data, error);
  if (ok) *norm = data.norm;
  prunus_data_clear(&data);
  prunus_job_close(&job);
  return ok;
}

/* -o of the PyTorch export writes a state_dict and a .py next to it: neither may replace
 * the checkpoint exported or another prunus checkpoint (a round of a run), which the
 * export's own files would leave unreadable to prunus. */
static gboolean torch_outputs_free(const char *checkpoint, const char *out, GError **error) {
  char *py = prunus_export_torch_py_path(out);
  const char *paths[2] = {out, py};
  gboolean ok = TRUE;
  GStatBuf in_st;
  gboolean have_in = g_stat(checkpoint, &in_st) == 0;
  for (int i = 0; i < 2 && ok; i++) {
    GStatBuf st;
    if (g_stat(paths[i], &st) != 0) continue;
    if (have_in && st.st_dev == in_st.st_dev && st.st_ino == in_st.st_ino) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID,
                  "-o %s: %s is the checkpoint being exported; choose another "
                  "path (nothing was changed)",
                  out, paths[i]);
      ok = FALSE;
      break;
    }
    PrunusTensorFile *f = i == 0 && S_ISREG(st.st_mode) ? prunus_safetensors_read(out, NULL) : NULL;
    const char *format = f && f->metadata ? g_hash_table_lookup(f->metadata, "format") : NULL;
    if (format && !strcmp(format, "prunus")) {
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID,
                  "-o %s is a prunus checkpoint, which the PyTorch state_dict "
                  "would replace; choose another path (nothing was changed)",
                  out);
      ok = FALSE;
    }
    prunus_tensor_file_free(f);
  }
  g_free(py);
  return ok;
}

/* OUT names what the format writes: a folder for C (prunus_model.c and .h inside), a
 * file for safetensors (its .py beside it). Checked before anything is read. */
static gboolean out_fits(PrunusExportFormat format, const char *out, GError **error) {
  const char *problem = NULL;
  if (!out[0])
    problem = "is empty; give a folder (c) or a file name (safetensors)";
  else if (format != PRUNUS_EXPORT_C && g_file_test(out, G_FILE_TEST_IS_DIR))
    problem =
        "is a folder; --format safetensors writes a file (and its .py beside it): give "
        "a file name";
  else if (format == PRUNUS_EXPORT_C && g_file_test(out, G_FILE_TEST_EXISTS) &&
           !g_file_test(out, G_FILE_TEST_IS_DIR))
    problem =
        "is a file; --format c writes a folder (prunus_model.c and prunus_model.h): give "
        "a folder name";
  else if (format == PRUNUS_EXPORT_C &&
           (g_str_has_suffix(out, ".c") || g_str_has_suffix(out, ".h")))
    problem =
        "ends like a C file, but --format c writes a folder (prunus_model.c and "
        "prunus_model.h): give a folder name";
  if (problem)
    g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_INVALID, "-o %s %s (nothing was written)",
                out[0] ? out : "\"\"", problem);
  return problem == NULL;
}

gboolean prunus_job_export(const char *checkpoint, const PrunusJobOptions *o,
                           PrunusExportFormat format, const char *out, GError **error) {
  if (!out_fits(format, out, error)) return FALSE;
  if (format != PRUNUS_EXPORT_C && !torch_outputs_free(checkpoint, out, error)) return FALSE;
  GHashTable *md = NULL;
  PrunusModel *m = prunus_checkpoint_load(checkpoint, 1, NULL, &md, error);
  if (!m) return FALSE;
  if (format != PRUNUS_EXPORT_C) { /* as the C export makes its folder, this one makes OUT's */
    char *dir = g_path_get_dirname(out);
    int failed = g_mkdir_with_parents(dir, 0755) != 0 ? errno : 0;
    if (failed)
      g_set_error(error, PRUNUS_ERROR, PRUNUS_ERROR_IO, "-o %s: cannot create the folder %s: %s",
                  out, dir, g_strerror(failed));
    g_free(dir);
    if (failed) {
      g_hash_table_unref(md);
      prunus_model_free(m);
      return FALSE;
    }
  }

  gboolean ok, quiet = o && o->quiet;
  if (format == PRUNUS_EXPORT_C) {
    PrunusNorm norm;
    gboolean has_norm = FALSE;
    ok = prunus_checkpoint_metadata_norm(md, checkpoint, &norm, &has_norm, error) &&
         (has_norm || norm_from_config(o, checkpoint, m, &norm, error)) &&
         prunus_export_c(m, &norm, out, checkpoint, quiet, NULL, error);
  } else {
    ok = prunus_export_torch(m, md, out, checkpoint, quiet, error);
  }
  g_hash_table_unref(md);
  prunus_model_free(m);
  return ok;
}
