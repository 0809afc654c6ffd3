"""Gene-expression features: log transform, per-gene z-scores, top-variance genes, missing
values, the documented table, and the import (workflow and CLI) next to clinical data."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cli_support import run as run_cli
from medloop.cli import main
from medloop.config import Settings
from medloop.exceptions import IngestError, InvalidInputError, NotFittedError, NotFoundError
from medloop.ingest import pseudonymize
from medloop.precision import GeneExpression, read_expression
from medloop.store import repository as repo
from medloop.workflows import Workspace
from medloop.workflows import precision as wf


def matrix(n: int = 40, genes: int = 12, seed: int = 0) -> pd.DataFrame:
    """Counts with gene-specific depth and spread; gene 0 mostly unmeasured, gene 1
    constant, a few gaps elsewhere."""
    rng = np.random.default_rng(seed)
    means = np.geomspace(5, 2000, genes)
    spread = np.linspace(0.1, 1.5, genes)  # log-scale SD grows with the gene index
    counts = np.round(means * np.exp(rng.normal(0, spread, size=(n, genes))))
    frame = pd.DataFrame(counts, columns=[f"G{j}" for j in range(genes)])
    frame.index = [f"p{i}" for i in range(n)]
    frame.iloc[: int(0.7 * n), 0] = np.nan
    frame["G1"] = 42.0
    frame.iloc[3, 5] = np.nan
    frame.iloc[7, 9] = np.nan
    return frame


def test_log_and_per_gene_standardisation() -> None:
    m = matrix()
    genes = GeneExpression().fit(m)
    X = genes.transform(m)
    assert "gene:G0" not in X.columns and "gene:G1" not in X.columns  # sparse, constant
    assert X.shape == (40, 10) and not X.isna().any().any()
    logged = np.log2(m["G4"] + 1)
    expected = (logged - logged.mean()) / logged.std(ddof=1)
    np.testing.assert_allclose(X["gene:G4"], expected, atol=1e-12)
    filled = X["gene:G5"].drop(index="p3")
    assert np.isclose(X["gene:G5"].mean(), 0, atol=1e-9) and np.isclose(X["gene:G5"].std(), 1)
    median = np.log2(m["G5"].dropna() + 1).median()  # the gap gets the gene's median
    column = np.log2(m["G5"].fillna(2**median - 1) + 1)
    assert X.loc["p3", "gene:G5"] == pytest.approx((median - column.mean()) / column.std(ddof=1))
    assert len(filled) == 39


def test_top_variance_genes_and_new_patients() -> None:
    m = matrix()
    genes = GeneExpression(top_genes=3).fit(m)
    logged = np.log2(m.drop(columns=["G0"]) + 1)
    variance = logged.fillna(logged.median()).var().sort_values(ascending=False)
    assert genes.genes_ == list(variance.index[:3])  # the largest log-scale spread
    assert set(genes.genes_) <= {"G9", "G10", "G11"}  # planted: spread grows with index
    new = m.drop(columns=["G10"]).iloc[:2].assign(EXTRA=1.0)
    X = genes.transform(new)
    assert list(X.columns) == [f"gene:{g}" for g in genes.genes_]
    fill = genes.describe().set_index("name").loc["gene:G10", "fill_value"]
    assert X["gene:G10"].tolist() == pytest.approx([fill, fill])  # absent gene: the median
    table = genes.describe()
    assert set(table["group"]) == {"genomic"} and set(table["unit"]) == {"z-score of log2(x + 1)"}
    assert table["variance"].is_monotonic_decreasing
    assert [f.name for f in genes.features()] == list(X.columns)


def test_bad_expression_values() -> None:
    m = matrix()
    with pytest.raises(NotFittedError):
        GeneExpression().transform(m)
    negative = m.assign(G4=m["G4"] - 1e6)
    with pytest.raises(InvalidInputError, match="log2"):
        GeneExpression().fit(negative)
    already_log = GeneExpression(log_transform=False).fit(negative)
    assert "gene:G4" in already_log.transform(negative).columns
    assert already_log.describe()["unit"].iloc[0] == "z-score"
    with pytest.raises(InvalidInputError, match="top_genes"):
        GeneExpression(top_genes=0).fit(m)
    with pytest.raises(InvalidInputError, match="no gene"):
        GeneExpression(min_present=1.0).fit(m[["G0", "G1"]])


def test_read_expression_pseudonymises_and_checks(tmp_path: Path) -> None:
    path = tmp_path / "expr.csv"
    matrix(n=10).rename_axis("sample").reset_index().to_csv(path, index=False)
    frame = read_expression(path, key=b"k", id_column="sample")
    assert list(frame.index) == [pseudonymize(f"p{i}", key=b"k") for i in range(10)]
    assert frame.shape[1] == 12
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"sample": ["a", "b"], "G1": ["high", "low"]}).to_csv(bad, index=False)
    with pytest.raises(IngestError, match=r"bad\.csv.*numbers"):
        read_expression(bad, key=b"k", id_column="sample")


def cohort(tmp_path: Path, n: int = 160) -> tuple[Path, Path]:
    """Clinical table plus an expression matrix in which one gene drives the hazard."""
    rng = np.random.default_rng(1)
    ids = [f"MRN{i:05d}" for i in range(n)]
    expr = matrix(n=n, genes=30, seed=2)
    driver = np.log2(expr["G29"] + 1)
    hazard = np.exp(1.2 * (driver - driver.mean()) / driver.std())
    time = rng.exponential(1 / hazard.to_numpy()) * 365
    censor = rng.uniform(100, 700, n)
    clinical = pd.DataFrame(
        {
            "mrn": ids,
            "age": rng.normal(60, 8, n).round(),
            "time": np.minimum(time, censor).round(1),
            "event": (time <= censor).astype(int),
        }
    )
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    expr.index = ids
    expr.rename_axis("mrn").reset_index().to_csv(tmp_path / "expr.csv", index=False)
    return tmp_path / "clinical.csv", tmp_path / "expr.csv"


def test_expression_import_and_a_gene_driven_risk_model(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clinical, expr = cohort(tmp_path)
    args = ["patients", "import", str(clinical), "-p", "onc", "--id-column", "mrn"]
    monkeypatch.setattr(
        sys, "argv", ["medloop", *args, "--expression", str(expr), "--top-genes", "8"]
    )
    try:
        main()
    except SystemExit as exit_:
        assert not exit_.code
    assert "expression: 160 patients, 8 genes (z-score of log2(x + 1))" in capsys.readouterr().out
    ws = Workspace.open(Settings(home=home))
    try:
        with ws.db.session() as s:
            project = repo.get_project(s, name="onc")
            frame = wf.prepo.features_frame(s, project_id=project.id)
        genes = [c for c in frame.columns if c.startswith("gene:")]
        assert len(genes) == 8 and "gene:G29" in genes  # G29 is among the most variable
        assert {"age", "time", "event"} <= set(frame.columns)
        table = wf.expression_features(ws, project="onc")
        assert list(table["name"]) == wf.expression_features(ws, project="onc")["name"].tolist()
        # a second file lands on the stored scale: same genes, no new transform version
        extra = pd.read_csv(expr).iloc[:3].assign(mrn=["NEW1", "NEW2", "NEW3"])
        extra.to_csv(tmp_path / "more.csv", index=False)
        with pytest.raises(IngestError, match=r"3 row\(s\) name patients who are not in 'onc'"):
            wf.import_expression(ws, project="onc", path=tmp_path / "more.csv", id_column="mrn")
        with ws.db.session() as s:
            assert wf.prepo.count_patients(s, project_id=project.id) == 160  # none added
        new = pd.read_csv(clinical).iloc[:3].assign(mrn=["NEW1", "NEW2", "NEW3"])
        new.to_csv(tmp_path / "new.csv", index=False)
        wf.import_patients_table(ws, project="onc", path=tmp_path / "new.csv", id_column="mrn")
        wf.import_expression(ws, project="onc", path=tmp_path / "more.csv", id_column="mrn")
        with ws.db.session() as s:
            version = wf.prepo.latest_risk_model(s, project_id=project.id, kind="expression")
            log = repo.audit_frame(s)
        assert version.version == 1 and (log["action"] == "import_expression").sum() == 2
        model = wf.train_risk(
            ws,
            project="onc",
            time_column="time",
            event_column="event",
            method="cox",
            n_bootstrap=0,
        )
        assert model.metrics["cindex"] > 0.65  # the driver gene carries the risk
        doc = wf.describe_features(ws, project="onc")
    finally:
        ws.close()
    genes_doc = doc[doc["group"] == "genomic"]
    assert sorted(genes_doc.index) == sorted(genes)
    assert genes_doc["models"].eq("survival v1").all()
    code, out, _ = run_cli(monkeypatch, capsys, "patients", "features", "-p", "onc")
    assert code == 0 and "and 8 gene expression columns (--genes lists them)" in out
    assert "gene:G29" not in out
    code, out, _ = run_cli(monkeypatch, capsys, "patients", "features", "-p", "onc", "--genes")
    assert code == 0 and "gene:G29" in out


def test_a_refused_expression_file_leaves_nothing_half_imported(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clinical, expr = cohort(tmp_path)
    pd.read_csv(expr).assign(mrn=lambda f: f["mrn"].where(f.index > 0, "NOBODY")).to_csv(
        tmp_path / "stranger.csv", index=False
    )
    args = ["patients", "import", str(clinical), "-p", "onc", "--id-column", "mrn"]
    monkeypatch.setattr(
        sys, "argv", ["medloop", *args, "--expression", str(tmp_path / "stranger.csv")]
    )
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert "1 row(s) name patients who are not in 'onc'" in " ".join(
        capsys.readouterr().err.split()
    )
    ws = Workspace.open(Settings(home=home))
    try:
        with ws.db.session() as s, pytest.raises(NotFoundError):
            repo.get_project(s, name="onc")  # the clinical table was not imported either
    finally:
        ws.close()


def test_gene_symbols_are_never_taken_for_identifiers(tmp_path: Path) -> None:
    """A gene whose symbol reads like an identifier word (ZIP, a made-up one here) is read."""
    pd.DataFrame({"mrn": ["A", "B"], "ZIP1": [1.0, 2.0], "TP53": [3.0, 4.0]}).to_csv(
        tmp_path / "expr.csv", index=False
    )
    matrix = read_expression(tmp_path / "expr.csv", key=b"k", id_column="mrn")
    assert list(matrix.columns) == ["ZIP1", "TP53"]
