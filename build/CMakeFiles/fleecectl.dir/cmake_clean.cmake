file(REMOVE_RECURSE
  "CMakeFiles/fleecectl.dir/server/fleecectl/fleecectl_main.cpp.o"
  "CMakeFiles/fleecectl.dir/server/fleecectl/fleecectl_main.cpp.o.d"
  "bin/fleecectl"
  "bin/fleecectl.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang CXX)
  include(CMakeFiles/fleecectl.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
