CMakeFiles/fleecectl.dir/server/fleecectl/fleecectl_main.cpp.o: \
 /work/main/server/fleecectl/fleecectl_main.cpp \
 /usr/include/stdc-predef.h
