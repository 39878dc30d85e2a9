"""The `scenematch` command line: serve the API and operate the index, the models and the ranking.

Each module holds the commands of one concern and imports only `service.cli.common` of this
package; this file assembles them into the typer `app` (the `scenematch` entry point), so no
command module imports the app and there is no import cycle:

  serve       serve, build-model
  index       reindex, jobs, index-status (the admin API's counterparts on the data dir)
  evaluation  eval, tune, feedback-report (ranking quality, its weights, users' feedback)
  report      report (batch match reports)
  adapt       adapt, model-rollback, models (the encoder's versions)
"""
from __future__ import annotations

import os

# Before torch or faiss start OpenMP: its idle threads spin by default, and on a busy or shared
# CPU a spinning thread holds the core its partner needs, so one query embedding took 1-2 s
# instead of ~60 ms (docs/reliability.md). Passive threads sleep instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer  # noqa: E402

from service.cli import adapt, evaluation, index, report, serve  # noqa: E402

app = typer.Typer(help="scenematch 场景供需匹配服务", no_args_is_help=True, add_completion=False)

# In the order `scenematch --help` lists them.
app.command()(serve.serve)
app.command("build-model")(serve.build_model)
app.command("reindex")(index.reindex_command)
app.command("jobs")(index.jobs_command)
app.command("index-status")(index.index_status_command)
app.command("feedback-report")(evaluation.feedback_report_command)
app.command("report")(report.report_command)
app.command("adapt")(adapt.adapt_command)
app.command("model-rollback")(adapt.model_rollback_command)
app.command("models")(adapt.models_command)
app.command("eval")(evaluation.eval_command)
app.command("tune")(evaluation.tune_command)
