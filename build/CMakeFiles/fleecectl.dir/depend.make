# Empty dependencies file for fleecectl.
# This may be replaced when dependencies are built.
