"""Precision-medicine commands (patients, risk, recommend, bench precision)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.markup import escape

from medloop import workflows
from medloop.cli.common import (
    JsonOpt,
    ProjectOpt,
    SeedOpt,
    app,
    bench_app,
    console,
    erased_line,
    frame_records,
    out,
    output_file,
    print_json,
    progress_bar,
    pseudonymising,
    record_table,
    table,
)
from medloop.cli.common import workspace as open_workspace
from medloop.config import Settings
from medloop.exceptions import InvalidInputError
from medloop.times import iso_time, utc_text

patients_app = typer.Typer(
    help="Patient records (pseudonymised on the way in).", no_args_is_help=True
)
risk_app = typer.Typer(help="Risk and treatment-effect models.", no_args_is_help=True)
app.add_typer(patients_app, name="patients")
app.add_typer(risk_app, name="risk")


def _mapping(
    pairs: list[str] | None, *, option: str = "--map", form: str = "SOURCE=FEATURE"
) -> dict[str, str] | None:
    if not pairs:
        return None
    mapping = {}
    for pair in pairs:
        source, sep, target = pair.partition("=")
        if not sep or not source or not target:
            raise InvalidInputError(f"{option} expects {form}, got {pair!r}")
        mapping[source] = target
    return mapping


@patients_app.command("import")
def patients_import(
    path: Annotated[Path, typer.Argument(help="CSV/Parquet table or FHIR R4 bundle (.json).")],
    project: ProjectOpt,
    id_column: Annotated[str | None, typer.Option(help="Patient id column (tables only).")] = None,
    map_: Annotated[
        list[str] | None, typer.Option("--map", help="SOURCE=FEATURE; repeat. Default: all.")
    ] = None,
    text: Annotated[
        list[str] | None, typer.Option(help="Free-text column to scrub and keep; repeat.")
    ] = None,
    drop: Annotated[
        list[str] | None, typer.Option(help="Column to leave out (e.g. a name); repeat.")
    ] = None,
    unit: Annotated[
        list[str] | None, typer.Option(help="FEATURE=UNIT (e.g. age=years); repeat.")
    ] = None,
    expression: Annotated[
        Path | None,
        typer.Option(help="Gene-expression matrix (CSV/Parquet, one row per patient)."),
    ] = None,
    expression_id_column: Annotated[
        str | None, typer.Option(help="Patient id column of --expression (default --id-column).")
    ] = None,
    top_genes: Annotated[
        int | None, typer.Option(help="Keep only the most variable genes (default: all).")
    ] = None,
    log: Annotated[
        bool, typer.Option(help="log2(x + 1) before standardising (--no-log: already log).")
    ] = True,
    sep: Annotated[
        str | None,
        typer.Option(help="CSV cell separator, e.g. ';' or 'tab' (default: from the header)."),
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option(help="CSV file encoding, e.g. cp1252 (default: UTF-8, with or without BOM)."),
    ] = None,
    decimal: Annotated[
        str | None, typer.Option(help="CSV decimal mark: ',' for 13,1 (default '.').")
    ] = None,
    thousands: Annotated[
        str | None, typer.Option(help="CSV thousands separator: '.' for 1.250 (default none).")
    ] = None,
    na_value: Annotated[
        list[str] | None,
        typer.Option(help="A CSV cell that means missing (e.g. n.a. or -); repeat."),
    ] = None,
) -> None:
    """Import patients from a table or a FHIR bundle under keyed pseudonyms, optionally
    with gene expression (log2(x + 1), per-gene z-scores, `gene:<name>` features). A
    fact already stored (an import run again) is not added twice."""
    expression_ids = expression_id_column or id_column
    if expression is not None and expression_ids is None:
        raise InvalidInputError("--expression needs --expression-id-column (or --id-column)")
    default = workflows.precision.CsvDialect()
    dialect = workflows.precision.CsvDialect(
        sep="\t" if sep in {"tab", "\\t"} else sep,
        encoding=encoding or default.encoding,
        decimal=decimal or default.decimal,
        thousands=thousands,
        na_values=tuple(na_value or ()),
    )
    genes_line = None
    bundle = path.suffix.lower() == ".json"
    with open_workspace(pseudonymising(Settings())) as ws:
        if bundle:
            if unit or drop or dialect != default:
                raise InvalidInputError(
                    "--unit, --drop and the CSV options are for tables, not FHIR bundles"
                )
            summary = workflows.precision.import_fhir_bundle(ws, project=project, path=path)
        else:
            if id_column is None:
                raise InvalidInputError("tables need --id-column")
            if expression is not None and expression_ids is not None:  # before any import
                workflows.precision.check_expression_rows(
                    ws,
                    project=project,
                    path=expression,
                    id_column=expression_ids,
                    table=path,
                    table_id_column=id_column,
                    table_dialect=dialect,
                )
            summary = workflows.precision.import_patients_table(
                ws,
                project=project,
                path=path,
                id_column=id_column,
                columns=_mapping(map_),
                text_columns=text or (),
                drop_columns=drop or (),
                units=_mapping(unit, option="--unit", form="FEATURE=UNIT"),
                dialect=dialect,
            )
        if expression is not None and expression_ids is not None:
            genes = workflows.precision.import_expression(
                ws,
                project=project,
                path=expression,
                id_column=expression_ids,
                top_genes=top_genes,
                log_transform=log,
            )
            described = workflows.precision.expression_features(ws, project=project)
            genes_line = (
                f"expression: {genes.patients} patients, {len(described)} genes "
                f"({described['unit'].iloc[0]}), {genes.feature_values} values"
            )
            if genes.erased:
                genes_line += f"; {erased_line(genes.erased, 'rows')}"
    known = f" ({summary.known} stored already)" if summary.known else ""
    out.print(
        f"imported {summary.patients} patients into {summary.project!r}: "
        f"{summary.feature_values} feature values, {summary.observations} facts{known}"
    )
    if summary.skipped:
        said = ", ".join(f"{n} {why}" for why, n in summary.skipped.items())
        out.print(f"skipped (no fact about the patient): {said}")
    if summary.erased:
        out.print(
            f"the records of {summary.erased} erased patients skipped (consent withdrawn)"
            if bundle
            else erased_line(summary.erased, "rows")
        )
    if genes_line:
        out.print(genes_line)


@patients_app.command("features")
def patients_features(
    project: ProjectOpt,
    genes: Annotated[
        bool, typer.Option(help="List every gene:<name> column too (many); default counts them.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """The cohort's documented feature table: group, kind, unit, role, missing share,
    typical value and the current models that use each feature."""
    with open_workspace() as ws:
        frame = workflows.precision.describe_features(ws, project=project)
    if frame.empty:
        raise InvalidInputError(f"cohort {project!r} has no features yet (medloop patients import)")
    gene_rows = frame["group"] == "genomic"
    records = frame_records(frame if genes or as_json else frame[~gene_rows])
    if as_json:
        print_json(records)
        return
    lines = [
        {
            "feature": r["feature"],
            "kind": r["kind"],
            "unit": r["unit"] or "",
            "role": r["role"],
            "missing": f"{100 * r['missing']:.3g}%",
            "typical": f"{r['median']:g}" if r["median"] is not None else (r["values"] or ""),
            "used by": r["models"] or "-",
        }
        for r in records
    ]
    out.print(table(f"features of {project} ({len(frame)})", lines))
    if not genes and gene_rows.any():
        out.print(f"and {int(gene_rows.sum())} gene expression columns (--genes lists them)")


@risk_app.command("train")
def risk_train(
    project: ProjectOpt,
    time: Annotated[str, typer.Option(help="Follow-up time column.")] = "time",
    event: Annotated[str, typer.Option(help="Event column (1 = event).")] = "event",
    outcome: Annotated[
        str | None,
        typer.Option(
            help="0/1 outcome column with no follow-up time: train a calibrated classifier "
            "of it instead of a survival model (--time and --event are then unused)."
        ),
    ] = None,
    treatment: Annotated[
        str | None, typer.Option(help="0/1 treatment column: also train treatment effects.")
    ] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Column to leave out; repeat.")] = None,
    method: Annotated[
        str | None,
        typer.Option(
            help="cox, rsf, gbsa or ensemble (default); with --outcome logistic (default) or gbm."
        ),
    ] = None,
    learner: Annotated[str, typer.Option(help="Effects meta-learner: t, s or x.")] = "t",
    effects_horizon: Annotated[
        float | None,
        typer.Option(
            help="Effects outcome: event-free by this time (default: the horizon of the "
            "survival model in use, the median time on record).",
        ),
    ] = None,
    base: Annotated[str, typer.Option(help="Effects base model: linear or gbm.")] = "gbm",
    bootstrap: Annotated[
        int | None,
        typer.Option(
            help="Refits on resamples for each patient's 95% risk interval: 0 (none) or at "
            "least 39, the fewest a 95% percentile interval needs (default: 39).",
        ),
    ] = None,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """Train a risk model: a survival model, or with --outcome a calibrated classifier
    (and, with --treatment, a treatment-effect model)."""
    excluded = list(exclude or [])
    left_out = [*excluded, *([treatment] if treatment else [])]
    if effects_horizon is not None and (outcome is not None or not treatment):
        raise InvalidInputError(
            "--effects-horizon is for the effects of --treatment on survival data"
        )
    from medloop.precision.intervals import REFITS  # sklearn and sksurv: only when training

    refits = REFITS if bootstrap is None else bootstrap
    with open_workspace() as ws, progress_bar() as progress:
        if outcome is None:
            risk = workflows.precision.train_risk(
                ws,
                project=project,
                time_column=time,
                event_column=event,
                exclude=left_out,
                method=method or "ensemble",
                n_bootstrap=refits,
                seed=seed,
                progress=progress,
            )
        else:
            risk = workflows.precision.train_risk_classifier(
                ws,
                project=project,
                outcome_column=outcome,
                exclude=left_out,
                method=method or "logistic",
                n_bootstrap=refits,
                seed=seed,
                progress=progress,
            )
        rows = [risk.as_dict()]
        if treatment:
            rows.append(
                workflows.precision.train_effects(
                    ws,
                    project=project,
                    treatment_column=treatment,
                    event_column=outcome or event,
                    # follow-up time (survival data): the outcome is event-free by a horizon
                    time_column=None if outcome else time,
                    horizon=effects_horizon,
                    exclude=[*excluded, time],
                    learner=learner,
                    base=base,
                    seed=seed,
                    progress=progress,
                ).as_dict()
            )
    for row in rows:
        row["features"] = len(row["features"])
    if as_json:
        for row in rows:
            print_json(row)
    else:
        shown = ("metrics", "evaluation", "warning")
        out.print(table("trained", [{k: v for k, v in r.items() if k not in shown} for r in rows]))
        m, evaluation = rows[0]["metrics"], rows[0]["evaluation"]
        if outcome is None:
            out.print(
                f"survival model, {evaluation}: C-index {m['cindex']:.3f}, mean "
                f"time-dependent AUC {m['mean_auc']:.3f}, integrated Brier score {m['ibs']:.3f}"
            )
        else:
            out.print(
                f"classifier of {outcome}, {evaluation}: AUC {m['auc']:.3f}, Brier "
                f"score {m['brier']:.3f}, log loss {m['log_loss']:.3f} (prevalence "
                f"{m['prevalence']:.3f})"
            )
        if len(rows) > 1:
            effects = rows[1]["metrics"]
            verdict = "differs" if effects["heterogeneity_p"] < 0.05 else "no evidence it differs"
            out.print(
                f"treatment effect: average {100 * effects['average_effect']:+.1f} points; "
                f"between patients: {verdict} (p = {effects['heterogeneity_p']:.2g}, best "
                "linear predictor test)"
            )
        for row in rows:
            if row["warning"]:
                console.print(
                    f"[bold red]warning:[/] {row['kind']} model: {escape(row['warning'])}"
                )


@risk_app.command("evaluate")
def risk_evaluate(
    project: ProjectOpt,
    calibration: Annotated[
        Path | None, typer.Option(help="Write the calibration chart (PNG) here.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The cohort's risk model: how it was evaluated, its figures and its calibration
    (predicted against observed risk per group of patients)."""
    output_file(calibration)
    with open_workspace() as ws:
        card = workflows.precision.risk_model_card(ws, project=project)
    if calibration is not None:
        calibration.write_bytes(workflows.precision.calibration_chart(card))
    if as_json:
        print_json(card)
        return
    out.print(f"{card['name']} ({card['kind']}), {card['n_train']} patients, {card['evaluation']}")
    if card["warning"]:
        console.print(f"[bold red]warning:[/] {escape(card['warning'])}")
    spread = card["spread"]
    figures = {
        k: f"{v:.4f}" + (f" ± {spread[k]:.4f} (sd across folds)" if k in spread else "")
        for k, v in card["metrics"].items()
    }
    out.print(record_table("figures", figures))
    points = card["calibration"]
    rows = [
        {"predicted risk": f"{100 * p:.1f}%", "observed risk": f"{100 * o:.1f}%"}
        for p, o in zip(points["predicted"], points["observed"], strict=True)
    ]
    out.print(f"calibration of {points['what']}, per group of patients:")
    out.print(table("calibration", rows))
    if calibration is not None:
        out.print(f"calibration chart: {calibration}")


@risk_app.command("predict")
def risk_predict(
    project: ProjectOpt,
    patient: Annotated[list[str] | None, typer.Option(help="Pseudonym; repeat.")] = None,
    top: Annotated[
        int | None, typer.Option(min=1, help="Only the N patients at highest risk, highest first.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Each patient's risk of the event by the model's horizon (or of a classifier's
    outcome) with its 95% bootstrap interval; --json adds the ranking score."""
    with open_workspace() as ws:
        frame = workflows.precision.predict_risk(ws, project=project, patients=patient)
    title = f"risk ({len(frame)} patients)"
    if top is not None:
        title = f"highest risk ({min(top, len(frame))} of {len(frame)} patients)"
        frame = frame.sort_values("risk", ascending=False, kind="stable").head(top)
    if as_json:
        print_json(frame_records(frame))
        return
    if len(frame):  # one model for every row: say what it predicts once, in the title
        first = frame.iloc[0]
        if first["model_kind"] == "survival":
            what = f"the event by {first['horizon']:g} {first['time_unit'] or 'time units'}"
        else:
            what = str(first["outcome"])
        title = f"{title}: risk of {what}, {first['model_kind']} model v{first['model_version']}"
    rows = [
        {
            "patient": str(patient_id),
            "risk": f"{100 * row['risk']:.1f}%",
            "95% bootstrap interval": "none (retrain the model for one)"
            if pd.isna(row["risk_lower"])
            else f"{100 * row['risk_lower']:.1f}-{100 * row['risk_upper']:.1f}%",
            "notes": row.get("notes") or "",
        }
        for patient_id, row in frame.iterrows()
    ]
    if "notes" not in frame or not frame["notes"].notna().any():
        rows = [{k: v for k, v in row.items() if k != "notes"} for row in rows]
    out.print(table(title, rows))
    if len(frame) and frame["model_warning"].iloc[0]:
        console.print(f"[bold red]warning:[/] {escape(frame['model_warning'].iloc[0])}")


@app.command()
def recommend(
    patient: Annotated[str, typer.Argument(help="Patient pseudonym (or raw id).")],
    project: ProjectOpt,
    accept: Annotated[bool, typer.Option(help="Accept the suggestion.")] = False,
    override: Annotated[
        str | None, typer.Option(help="Override: the treatment chosen instead.")
    ] = None,
    treatment: Annotated[
        str | None, typer.Option(help="Treatment chosen when accepting 'no clear benefit'.")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Reason (required to override).")] = None,
    doctor: Annotated[
        str | None, typer.Option(help="Deciding doctor's username (an existing doctor).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Risk and personalised treatment recommendation; a doctor accepts or overrides it."""
    if accept and override:
        raise InvalidInputError("choose --accept or --override, not both")
    if (accept or override) and not doctor:
        raise InvalidInputError("a decision needs --doctor USERNAME: the deciding doctor")
    if not (accept or override) and (reason or treatment or doctor):
        raise InvalidInputError(
            "--reason, --treatment and --doctor go with a decision: add --accept or --override"
        )
    with open_workspace() as ws:
        view = workflows.precision.recommend(ws, project=project, patient=patient)
        decision = None
        if doctor and (accept or override):
            decision = workflows.precision.decide(
                ws,
                recommendation_id=view.recommendation_id,
                doctor=doctor,
                decision="accept" if accept else "override",
                treatment=override or treatment,
                reason=reason,
            )
    result = {**view.as_dict(), "computed_at": iso_time(view.computed_at)}
    if decision is not None:
        result["decision"] = {
            "decision": decision.decision,
            "treatment": decision.treatment,
            "reason": decision.reason,
            "doctor": decision.doctor,
        }
    if as_json:
        print_json(result)
        return
    out.print(f"patient {view.patient}: [bold]{view.recommendation}[/]")
    if view.computed_at is not None:
        models = " and ".join(view.models)
        out.print(f"computed {utc_text(view.computed_at)} with {models}")
    for warning in view.model_warnings:
        console.print(f"[bold red]warning:[/] {escape(warning)}")
    for note in view.feature_notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    if view.risk is not None:
        notes = []
        if view.risk_lower is not None and view.risk_upper is not None:
            notes.append(
                f"95% bootstrap interval {100 * view.risk_lower:.1f}-{100 * view.risk_upper:.1f}%"
            )
        elif view.risk_interval_missing:
            notes.append(f"no interval: {view.risk_interval_missing}")
        if view.horizon is not None:
            what = f"the event by {view.horizon:g} {view.time_unit or 'time units'}"
        else:
            what = view.outcome or "the outcome"
            notes.append("calibrated classifier")
        note = f" ({'; '.join(notes)})" if notes else ""
        out.print(f"risk of {what}: [bold]{100 * view.risk:.1f}%[/]{note}")
        drivers = [
            {
                "feature": d["feature"],
                "value": d["value"],
                f"multiplies the {d['scale']} by": f"x{d['factor']:.2f}",
            }
            for d in view.risk_drivers
        ]
        if drivers:
            out.print(table("what drives the risk (vs the average patient)", drivers))
    if view.benefit is not None:
        low, high = view.benefit_lower, view.benefit_upper
        interval = (
            ""
            if low is None or high is None
            else f" (95% interval {100 * low:+.1f} to {100 * high:+.1f})"
        )
        own = f"{100 * view.benefit:+.1f} points of P({view.effect_outcome}){interval}"
        average = view.average_effect
        if view.effect_basis == "average" and average:
            out.print(
                f"average effect of treatment [bold]{100 * average['benefit']:+.1f}[/] points of "
                f"P({view.effect_outcome}) (95% CI {100 * average['lower']:+.1f} to "
                f"{100 * average['upper']:+.1f}): the best estimate for this patient, and what "
                "the verdict rests on"
            )
            if view.heterogeneity_note:
                out.print(view.heterogeneity_note)
            out.print(
                f"secondary: the model's own estimate for this patient, {own}; its "
                "difference from the average is within noise"
            )
        else:
            out.print(f"benefit of treatment {own}")
            if view.heterogeneity_note:
                out.print(view.heterogeneity_note)
        drivers = [
            {
                "feature": d["feature"],
                "value": d["value"],
                "moves the benefit by (pts)": f"{100 * d['contribution']:+.1f}",
            }
            for d in view.drivers
        ]
        if drivers:
            out.print(table("what drives it (vs each feature at the cohort's mean)", drivers))
    if decision is not None:
        out.print(f"{decision.doctor}: {decision.decision} -> {decision.treatment}")


@bench_app.command("precision")
def bench_precision(seed: SeedOpt = 0, as_json: JsonOpt = False) -> None:
    """GBSG2 survival (C-index, IBS) and ACTG 320 policy value and hazard ratio."""
    from medloop.precision.benchmark import run

    result = run(seed=seed)
    if as_json:
        print_json(result)
    else:
        out.print(record_table("precision benchmark", result))
