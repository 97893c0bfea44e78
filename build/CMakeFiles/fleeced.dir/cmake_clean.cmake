file(REMOVE_RECURSE
  "CMakeFiles/fleeced.dir/server/fleeced_main.cpp.o"
  "CMakeFiles/fleeced.dir/server/fleeced_main.cpp.o.d"
  "bin/fleeced"
  "bin/fleeced.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang CXX)
  include(CMakeFiles/fleeced.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
