file(REMOVE_RECURSE
  "libfleece_nbd.a"
)
