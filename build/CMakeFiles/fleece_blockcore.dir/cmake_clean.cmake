file(REMOVE_RECURSE
  "CMakeFiles/fleece_blockcore.dir/blockcore/base/status.cpp.o"
  "CMakeFiles/fleece_blockcore.dir/blockcore/base/status.cpp.o.d"
  "CMakeFiles/fleece_blockcore.dir/blockcore/block_node.cpp.o"
  "CMakeFiles/fleece_blockcore.dir/blockcore/block_node.cpp.o.d"
  "CMakeFiles/fleece_blockcore.dir/blockcore/io/blocking_pool.cpp.o"
  "CMakeFiles/fleece_blockcore.dir/blockcore/io/blocking_pool.cpp.o.d"
  "libfleece_blockcore.a"
  "libfleece_blockcore.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang CXX)
  include(CMakeFiles/fleece_blockcore.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
