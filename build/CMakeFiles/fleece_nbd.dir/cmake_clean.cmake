file(REMOVE_RECURSE
  "CMakeFiles/fleece_nbd.dir/server/export/export_registry.cpp.o"
  "CMakeFiles/fleece_nbd.dir/server/export/export_registry.cpp.o.d"
  "libfleece_nbd.a"
  "libfleece_nbd.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang CXX)
  include(CMakeFiles/fleece_nbd.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
