"""The planner's inputs from outside the sweep: the prior laws (the paper's, a fits.json's or
``--law``), the prior joint law (``--joint-law``, a fits.json's or the assumed default) and the
seed-noise model (``--noise-from``, ``--noise-sd``, a fits.json's scatter or the paper's); bad
input raises `PlanError` (exit status 2). Used by `scaling.study.laws.plan`.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from analysis.calibration import PriorLaws, paper_prior
from analysis.jointlaw import JointLaw
from analysis.paper import AGAINST, METRICS, PAPER_IRREDUCIBLE
from analysis.powerlaw import Law
from analysis.results import ResultsError, load_results, prepare
from analysis.seeds import pooled_log_sd
from analysis.simulate import Noise, joint_prior, paper_noise_sd
from contracts import ContractError
from contracts.fits import FitsFile, read_fits
from scaling.core.cli import InputError


class PlanError(InputError):
    """A bad argument or input of the planner (exit status 2); the message names it."""


def _law_arg(text: str):
    """'ce_last:N=-0.23,2.0[,4.5]' -> (metric, against, Law)."""
    try:
        head, values = text.split("=", 1)
        metric, against = head.split(":")
        nums = [float(v) for v in values.split(",")]
    except ValueError:
        raise PlanError(
            f"--law {text!r}: expected METRIC:AGAINST=alpha,beta[,E] (e.g. ce_last:N=-0.23,2.0,4.5)"
        ) from None
    if metric not in METRICS or against not in AGAINST or len(nums) not in (2, 3):
        raise PlanError(
            f"--law {text!r}: metric must be one of {', '.join(METRICS)}, against N or Cmin, "
            f"then alpha,beta[,E]"
        )
    if not nums[0] < 0 or not nums[1] > 0:
        raise PlanError(
            f"--law {text!r}: alpha must be negative (the metric falls with scale) and beta "
            "positive"
        )
    E = nums[2] if len(nums) == 3 else PAPER_IRREDUCIBLE[metric]
    return metric, against, Law(nums[0], nums[1], E)


def _read_fits(spec: str) -> FitsFile:
    """A fits.json written by scaling.fit (`contracts.fits`: power laws under "fits", the joint
    law under "joint")."""
    if not Path(spec).exists():
        raise PlanError(
            f"--prior {spec}: no such file (use 'paper' or a fits.json from scaling.fit)"
        )
    try:
        return read_fits(spec)
    except ContractError as e:
        raise PlanError(f"--prior {e}") from None


def load_prior(spec: str, metrics: list[str], laws: list[str]) -> tuple[dict, str]:
    """The prior per metric ('paper' or a fits.json path), with --law overrides; and its
    description.

    A fits.json of a joint-law study (``scaling.fit --law nd``) holds no laws vs N and Cmin:
    for its metrics the paper's are taken, and the description says so.
    """
    if spec == "paper":
        priors, source = (
            paper_prior(metrics),
            "the paper's published laws (Tian et al. 2024, eq. 11-16)",
        )
    else:
        doc = _read_fits(spec)
        found, joint = doc.laws(), doc.joint_laws()
        priors = {}
        for m in metrics:
            if (m, "N") in found and (m, "Cmin") in found:
                n, c = found[(m, "N")], found[(m, "Cmin")]
                # measured on that study's grid: the planned grid's fit must return them
                priors[m] = PriorLaws(
                    m, Law(n.alpha, n.beta, n.E), Law(c.alpha, c.beta, c.E), target="grid"
                )
        source = f"the fits in {spec}"
        borrowed = [m for m in metrics if m not in priors and m in joint]
        if borrowed:
            priors.update(paper_prior(borrowed))
            source += (
                f" ({', '.join(borrowed)} vs N and Cmin: the paper's laws; the file holds only "
                "their "
                f"joint law)"
            )
    for text in laws:
        metric, against, law = _law_arg(text)
        base = priors.get(metric) or paper_prior([metric])[metric]
        priors[metric] = dataclasses.replace(
            base, **({"n_law": law} if against == "N" else {"cmin_law": law})
        )
        source += f"; {metric} vs {against} from --law"
    missing = [m for m in metrics if m not in priors]
    if missing:
        raise PlanError(
            f"--prior {spec}: no law vs both N and Cmin for {', '.join(missing)} "
            f"(give them with --law METRIC:AGAINST=alpha,beta[,E], or limit --metrics)"
        )
    return {m: priors[m] for m in metrics}, source


def _joint_arg(text: str) -> tuple[str, JointLaw]:
    """'ce_avg=E,A,alpha,B,beta' -> (metric, JointLaw)."""
    try:
        metric, values = text.split("=", 1)
        E, A, alpha, B, beta = (float(v) for v in values.split(","))
    except ValueError:
        raise PlanError(
            f"--joint-law {text!r}: expected METRIC=E,A,alpha,B,beta "
            f"(e.g. ce_avg=5.0,2e3,0.35,4e4,0.3)"
        ) from None
    if metric not in METRICS or not metric.startswith("ce"):
        raise PlanError(
            f"--joint-law {text!r}: the joint law is fitted to losses: ce_avg or ce_last"
        )
    if not (A > 0 and B > 0 and alpha > 0 and beta > 0 and E >= 0):
        raise PlanError(f"--joint-law {text!r}: A, B, alpha and beta must be positive and E >= 0")
    return metric, JointLaw(E, A, alpha, B, beta)


def load_joint_prior(
    spec: str,
    texts: list[str],
    curves: dict,
    kappa: tuple[float, float],
    d_unit: str,
    tokens_per_image: int,
) -> tuple[dict[str, JointLaw], str]:
    """The prior joint law per loss metric of `curves`, and where each came from.

    In order: --joint-law on the command line; a fits.json's joint law (``scaling.fit --law
    nd``; D converted between images and tokens with this sweep's tokens per image); else the
    default, an ASSUMPTION (the paper publishes no joint law): the planner's training curves
    of that metric (Chinchilla's form E + A N^-a + B (C/N)^-b, Hoffmann et al. 2022, calibrated
    to the prior's laws vs N and Cmin on this grid) read as L(N, D) with C = kappa N D
    (`analysis.simulate.joint_prior`).
    """
    given = dict(_joint_arg(t) for t in texts)
    records = {} if spec == "paper" else _read_fits(spec).joint_laws()
    priors, sources = {}, []
    for m in curves:
        if m in given:
            priors[m], how = given[m], "--joint-law"
        elif m in records:
            r = records[m]
            unit = r.d_unit
            B = r.B
            if unit != d_unit:  # B / D_img^beta = B L^beta / D_tok^beta
                B *= tokens_per_image ** (r.beta if d_unit == "tokens" else -r.beta)
            priors[m] = JointLaw(r.E, r.A, r.alpha, B, r.beta)
            how = f"the joint fit in {spec}" + (
                f" (D converted from {unit} at {tokens_per_image} tokens per image)"
                if unit != d_unit
                else ""
            )
        elif (why := curves[m].not_representable()) is not None:
            sources.append(f"{m}: not representable: not simulated ({why})")
            continue
        elif curves[m].cmin_curves is not None:
            sources.append(
                f"{m}: not simulated (its laws vs N and Cmin need curves of their own: "
                "no one L(N, D) reads from them)"
            )
            continue
        else:
            priors[m] = joint_prior(curves[m], kappa[0])
            how = (
                "ASSUMED (the paper gives no joint law): the planner's training curves E + A N^-a "
                "+ "
                "B (C/N)^-b (Chinchilla's form), calibrated to the laws vs N and Cmin above, "
                "read as "
                f"L(N, D) with C = kappa N D, kappa = {kappa[0]:.3g} FLOPs per parameter per "
                f"{d_unit[:-1]} (this grid's exact counts; it varies by "
                f"{100 * (kappa[1] - 1):.2g}% over "
                f"the runs)"
            )
        sources.append(f"{m}: {how}")
    return priors, "; ".join(sources)


def load_noise(args, metrics: list[str], priors: dict) -> Noise:
    """The noise model: measured from a table with seeds (--noise-from), a number, or the
    default."""
    if args.noise_from:
        try:
            table = prepare(load_results(args.noise_from), metrics, source=str(args.noise_from))
            sd, dof = {}, {}
            for m in metrics:
                sd[m], dof[m] = pooled_log_sd(table, m, priors[m].E)
        except ResultsError as e:
            raise PlanError(f"--noise-from {args.noise_from}: {e}") from None
        return Noise(
            sd,
            args.eval_noise,
            f"measured from the seed replicates in {args.noise_from} (pooled sd of "
            f"log(final - E) within sizes; {min(dof.values())} degrees of freedom)",
        )
    if args.noise_sd is not None:
        if not args.noise_sd >= 0:
            raise PlanError(f"--noise-sd must be >= 0; got {args.noise_sd}")
        return Noise(
            {m: args.noise_sd for m in metrics}, args.eval_noise, "--noise-sd on the command line"
        )
    if args.prior != "paper":
        own = fits_noise_sd(_read_fits(args.prior), metrics)
        sd = {m: own.get(m, paper_noise_sd(m)) for m in metrics}
        borrowed = [m for m in metrics if m not in own]
        return Noise(
            sd,
            args.eval_noise,
            f"default for a fits.json prior: the scatter about its own N laws (residual sd of "
            f"log(final - E), |alpha| sd(ln N) sqrt(1 - r^2) / |r| over its sizes; "
            f"{args.prior}); an upper bound on seed noise, since it also holds misfit"
            + (f"; {', '.join(borrowed)}: the paper's (not in the file)" if borrowed else ""),
        )
    return Noise(
        {m: paper_noise_sd(m) for m in metrics},
        args.eval_noise,
        "default: the scatter about the paper's N laws implied by their reported r = -0.998 over "
        "its 12 "
        "sizes (|alpha| sd(ln N) sqrt(1 - r^2)); an upper bound on seed noise, since it also "
        "holds misfit",
    )


def fits_noise_sd(doc: FitsFile, metrics: list[str]) -> dict[str, float]:
    """Per metric, the scatter of a fitted study about its own law vs N: the residual sd of
    log(final - E) of the log-log line, |alpha| sd(ln N) sqrt(1 - r^2) / |r| (population sd
    over the study's sizes; exact for an OLS line). Metrics without a law vs N, its r or the
    study's sizes are left out."""
    laws = doc.laws()
    sizes = np.asarray(doc.details.get("sizes") or [], float)
    out = {}
    for m in metrics:
        law = laws.get((m, "N"))
        r = law.record.get("r") if law is not None else None
        if law is None or not isinstance(r, (int, float)) or not 0 < abs(r) <= 1:
            continue
        if len(sizes) < 3 or not (sizes > 0).all():
            continue
        sd_lx = float(np.std(np.log(sizes)))
        out[m] = abs(law.alpha) * sd_lx * math.sqrt(max(0.0, 1 - r * r)) / abs(r)
    return out
