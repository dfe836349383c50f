"""Detection mAP (pycocotools), bag-level alarm metrics (ROC, AUROC, detection rate at a fixed
false-alarm rate, threshold calibration) and curves."""
