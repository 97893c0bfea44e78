#include "server/nbd/errno_map.h"

#include <cerrno>

#include "server/nbd/protocol.h"

namespace server::nbd {

uint32_t nbd_error_from_errno(int err, uint16_t cmd_flags) {
  switch (err) {
    case 0:
      return kNbdOk;
    case EPERM:
    case EROFS:
      return kNbdEperm;
    case EIO:
      return kNbdEio;
    case ENOMEM:
      return kNbdEnomem;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return kNbdEnospc;
    case ESHUTDOWN:
      return kNbdEshutdown;
    case EOVERFLOW:
      return (cmd_flags & kCmdFlagDf) ? kNbdEoverflow : kNbdEinval;
    case ENOTSUP:
#if EOPNOTSUPP != ENOTSUP
    case EOPNOTSUPP:
#endif
      return (cmd_flags & kCmdFlagFastZero) ? kNbdEnotsup : kNbdEinval;
    default:
      return kNbdEinval;
  }
}

const char* nbd_error_name(uint32_t nbd_error) {
  switch (nbd_error) {
    case kNbdOk:
      return "OK";
    case kNbdEperm:
      return "EPERM";
    case kNbdEio:
      return "EIO";
    case kNbdEnomem:
      return "ENOMEM";
    case kNbdEinval:
      return "EINVAL";
    case kNbdEnospc:
      return "ENOSPC";
    case kNbdEoverflow:
      return "EOVERFLOW";
    case kNbdEnotsup:
      return "ENOTSUP";
    case kNbdEshutdown:
      return "ESHUTDOWN";
  }
  return "E?";
}

}  // namespace server::nbd
