"""Physics-based synthetic dual-energy X-ray scans (numpy only).

Physics: :mod:`~xscan.synth.attenuation` (NIST XCOM), :mod:`~xscan.synth.materials`,
:mod:`~xscan.synth.spectra` (sources, detector response), :mod:`~xscan.synth.scanner`,
:mod:`~xscan.synth.render` (path lengths -> low/high transmission), :mod:`~xscan.synth.zeff`,
:mod:`~xscan.synth.colormap` (false colour) and :mod:`~xscan.synth.tip` (threat image
projection). Submodules are imported on demand; importing this package is cheap.
"""
