CMakeFiles/fleeced.dir/server/fleeced_main.cpp.o: \
 /work/main/server/fleeced_main.cpp /usr/include/stdc-predef.h
