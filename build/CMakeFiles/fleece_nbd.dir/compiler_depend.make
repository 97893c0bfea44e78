# Empty compiler generated dependencies file for fleece_nbd.
# This may be replaced when dependencies are built.
