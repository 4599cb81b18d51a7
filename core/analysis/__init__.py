"""Analysis of the ODE view: trajectories and their reversal, Jacobian spectra, interpolation."""

from core.analysis.interpolate import interpolate, network_blocks
from core.analysis.spectra import (
    NormGrowth,
    Spectrum,
    block_map,
    block_spectrum,
    norm_growth,
    rhs,
    rhs_spectrum,
    spectrum,
)
from core.analysis.trajectory import Trajectory, relative_error, trajectory

__all__ = [
    "NormGrowth", "Spectrum", "Trajectory", "block_map", "block_spectrum", "interpolate",
    "network_blocks", "norm_growth", "relative_error", "rhs", "rhs_spectrum", "spectrum",
    "trajectory",
]
