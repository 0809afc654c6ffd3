"""Gene-expression features: a wide matrix (one row per patient, one column per gene)
into standardised genomic features.

`GeneExpression` handles missing values (genes measured in too few patients are
dropped; remaining gaps are filled with the gene's training median on the log scale),
log-transforms raw counts or intensities (`log2(x + 1)`), keeps the `top_genes` most
variable genes (variance on the log scale; optional), and standardises each gene with its
training mean and standard deviation. Everything it learns comes from the expression
values alone (no outcome), so fitting it on a whole cohort leaks nothing about outcomes.
Output columns are `gene:<name>`; `features()` and `describe()` document them in the
same shape as `FeatureTable` (group "genomic").

>>> m = pd.DataFrame({"BRCA1": [0.0, 3.0, 7.0], "ESR1": [1.0, 1.0, None]}, index=["a", "b", "c"])
>>> X = GeneExpression().fit_transform(m)
>>> list(X.columns), round(float(X["gene:BRCA1"].mean()), 6)
(['gene:BRCA1'], 0.0)
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from medloop.exceptions import IngestError, InvalidInputError, NotFittedError
from medloop.precision.features import Feature
from medloop.precision.records import read_table

logger = logging.getLogger(__name__)

PREFIX = "gene:"
LOG_UNIT = "z-score of log2(x + 1)"
LINEAR_UNIT = "z-score"


def read_expression(path: str | Path, *, key: bytes, id_column: str) -> pd.DataFrame:
    """Read a wide expression matrix (CSV or Parquet; one row per patient keyed by
    `id_column`, one numeric column per gene) indexed by the patients' pseudonyms."""
    frame = read_table(path, key=key, id_column=id_column, named_identifiers=False)  # genes
    bad = [str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        raise IngestError(Path(path), f"expression columns must be numbers; not: {bad[:5]}")
    if frame.shape[1] == 0:
        raise IngestError(Path(path), "the expression matrix has no gene columns")
    return frame.astype(float)


class GeneExpression:
    """Expression matrix (patients x genes) -> standardised `gene:<name>` features.

    Parameters: `log_transform` (log2(x + 1); values must be >= 0), `top_genes` (keep the
    most variable genes; None keeps all), `min_present` (drop genes measured in fewer
    than this share of patients).
    Learned: `genes_` (kept, in output order), `medians_` (fill values on the
    transformed scale), `means_`, `scales_`, `missing_rate_`, `variance_`.
    """

    def __init__(
        self,
        *,
        log_transform: bool = True,
        top_genes: int | None = None,
        min_present: float = 0.5,
    ) -> None:
        self.log_transform = log_transform
        self.top_genes = top_genes
        self.min_present = min_present

    def _scale(self, matrix: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(matrix, pd.DataFrame):
            raise InvalidInputError("expression must be a DataFrame (patients x genes)")
        try:
            values = matrix.apply(pd.to_numeric).astype(float)
        except (ValueError, TypeError) as error:
            raise InvalidInputError(f"expression values must be numbers ({error})") from error
        if np.isinf(values.to_numpy()).any():
            raise InvalidInputError("expression values must be finite")
        if self.log_transform:
            negative = [str(c) for c in values.columns if (values[c].dropna() < 0).any()]
            if negative:
                raise InvalidInputError(
                    f"log2(x + 1) needs values >= 0 (already log-scaled? use "
                    f"log_transform=False); negative in {negative[:5]}"
                )
            values = np.log2(values + 1.0)
        return values

    def fit(self, matrix: pd.DataFrame) -> GeneExpression:
        if self.top_genes is not None and self.top_genes < 1:
            raise InvalidInputError("top_genes must be a positive number of genes")
        if not 0.0 <= self.min_present <= 1.0:
            raise InvalidInputError("min_present must be a share between 0 and 1")
        values = self._scale(matrix)
        if len(values) < 2:
            raise InvalidInputError("need at least two patients to standardise genes")
        self.missing_rate_ = values.isna().mean()
        kept = self.missing_rate_.index[(1.0 - self.missing_rate_) >= self.min_present]
        medians = values[kept].median()
        filled = values[kept].fillna(medians)
        variance = filled.var(ddof=1)
        kept = variance.index[variance > 0]  # constant genes carry no information
        variance = variance[kept].sort_values(ascending=False, kind="stable")
        if self.top_genes is not None:
            variance = variance.iloc[: self.top_genes]
        if variance.empty:
            raise InvalidInputError("no gene is measured often enough and varies")
        self.genes_ = [str(g) for g in variance.index]
        self.variance_ = variance
        self.medians_ = medians[variance.index]
        self.means_ = filled[variance.index].mean()
        self.scales_ = np.sqrt(variance)
        logger.info(
            "expression: kept %d of %d genes (%d patients)",
            len(self.genes_),
            values.shape[1],
            len(values),
        )
        return self

    def transform(self, matrix: pd.DataFrame) -> pd.DataFrame:
        """Standardised features (`gene:<name>`), indexed like `matrix`. Gaps, and genes
        absent from `matrix`, get the gene's training median."""
        if not hasattr(self, "genes_"):
            raise NotFittedError("GeneExpression is not fitted; call fit first")
        values = self._scale(matrix).reindex(columns=self.medians_.index)
        filled = values.fillna(self.medians_)
        z = (filled - self.means_) / self.scales_
        z.columns = [f"{PREFIX}{g}" for g in self.genes_]
        return z

    def fit_transform(self, matrix: pd.DataFrame) -> pd.DataFrame:
        return self.fit(matrix).transform(matrix)

    @property
    def unit(self) -> str:
        return LOG_UNIT if self.log_transform else LINEAR_UNIT

    def features(self) -> list[Feature]:
        """The kept genes as documented features (group "genomic")."""
        if not hasattr(self, "genes_"):
            raise NotFittedError("GeneExpression is not fitted; call fit first")
        how = "log2(x + 1), then " if self.log_transform else ""
        return [
            Feature(
                f"{PREFIX}{g}",
                group="genomic",
                unit=self.unit,
                description=f"expression of {g}: {how}standardised with the cohort's mean and SD",
            )
            for g in self.genes_
        ]

    def describe(self) -> pd.DataFrame:
        """One row per kept gene, in `FeatureTable.describe()`'s shape, plus the training
        variance used for the top-gene selection."""
        rows = []
        for feature, gene in zip(self.features(), self.genes_, strict=True):
            rows.append(
                {
                    "name": feature.name,
                    "group": feature.group,
                    "kind": feature.kind,
                    "unit": feature.unit,
                    "description": feature.description,
                    "source_unit": None,
                    "log1p": False,
                    "missing_rate": float(self.missing_rate_[gene]),
                    "fill_value": float(
                        (self.medians_[gene] - self.means_[gene]) / self.scales_[gene]
                    ),
                    "variance": float(self.variance_[gene]),
                }
            )
        return pd.DataFrame(rows)
