file(REMOVE_RECURSE
  "libfleece_blockcore.a"
)
