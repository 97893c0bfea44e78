# Empty compiler generated dependencies file for fleece_blockcore.
# This may be replaced when dependencies are built.
