// NBD wire protocol constants: magics, handshake flags, options, option replies, info
// types, transmission flags, commands, command flags, errors, structured reply chunk
// types and the fixed sizes of every header. Pure constants, no logic.
// Source: NetworkBlockDevice/nbd doc/proto.md (fixed newstyle, structured replies,
// metadata contexts). All integers are big-endian on the wire.
// Threading: constants only.
#pragma once

#include <cstddef>
#include <cstdint>

namespace server::nbd {

// ---- Handshake magics ----
inline constexpr uint64_t kNbdMagic = 0x4e42444d41474943ull;       // "NBDMAGIC"
inline constexpr uint64_t kIHaveOpt = 0x49484156454f5054ull;       // "IHAVEOPT"
inline constexpr uint64_t kOptReplyMagic = 0x0003e889045565a9ull;  // option reply

// ---- Handshake flags (server, u16) ----
inline constexpr uint16_t kFlagFixedNewstyle = 1u << 0;
inline constexpr uint16_t kFlagNoZeroes = 1u << 1;

// ---- Client flags (u32) ----
inline constexpr uint32_t kClientFlagFixedNewstyle = 1u << 0;
inline constexpr uint32_t kClientFlagNoZeroes = 1u << 1;

// ---- Options ----
inline constexpr uint32_t kOptExportName = 1;
inline constexpr uint32_t kOptAbort = 2;
inline constexpr uint32_t kOptList = 3;
inline constexpr uint32_t kOptPeekExport = 4;  // withdrawn
inline constexpr uint32_t kOptStartTls = 5;
inline constexpr uint32_t kOptInfo = 6;
inline constexpr uint32_t kOptGo = 7;
inline constexpr uint32_t kOptStructuredReply = 8;
inline constexpr uint32_t kOptListMetaContext = 9;
inline constexpr uint32_t kOptSetMetaContext = 10;
inline constexpr uint32_t kOptExtendedHeaders = 11;

// ---- Option reply types ----
inline constexpr uint32_t kRepAck = 1;
inline constexpr uint32_t kRepServer = 2;
inline constexpr uint32_t kRepInfo = 3;
inline constexpr uint32_t kRepMetaContext = 4;
inline constexpr uint32_t kRepFlagError = 1u << 31;
inline constexpr uint32_t kRepErrUnsup = kRepFlagError | 1;
inline constexpr uint32_t kRepErrPolicy = kRepFlagError | 2;
inline constexpr uint32_t kRepErrInvalid = kRepFlagError | 3;
inline constexpr uint32_t kRepErrPlatform = kRepFlagError | 4;
inline constexpr uint32_t kRepErrTlsReqd = kRepFlagError | 5;
inline constexpr uint32_t kRepErrUnknown = kRepFlagError | 6;
inline constexpr uint32_t kRepErrShutdown = kRepFlagError | 7;
inline constexpr uint32_t kRepErrBlockSizeReqd = kRepFlagError | 8;
inline constexpr uint32_t kRepErrTooBig = kRepFlagError | 9;
inline constexpr uint32_t kRepErrExtHeaderReqd = kRepFlagError | 10;

// ---- Info types (NBD_OPT_INFO / NBD_OPT_GO) ----
inline constexpr uint16_t kInfoExport = 0;
inline constexpr uint16_t kInfoName = 1;
inline constexpr uint16_t kInfoDescription = 2;
inline constexpr uint16_t kInfoBlockSize = 3;

// ---- Transmission flags (u16) ----
inline constexpr uint16_t kFlagHasFlags = 1u << 0;
inline constexpr uint16_t kFlagReadOnly = 1u << 1;
inline constexpr uint16_t kFlagSendFlush = 1u << 2;
inline constexpr uint16_t kFlagSendFua = 1u << 3;
inline constexpr uint16_t kFlagRotational = 1u << 4;
inline constexpr uint16_t kFlagSendTrim = 1u << 5;
inline constexpr uint16_t kFlagSendWriteZeroes = 1u << 6;
inline constexpr uint16_t kFlagSendDf = 1u << 7;
inline constexpr uint16_t kFlagCanMultiConn = 1u << 8;
inline constexpr uint16_t kFlagSendResize = 1u << 9;
inline constexpr uint16_t kFlagSendCache = 1u << 10;
inline constexpr uint16_t kFlagSendFastZero = 1u << 11;
inline constexpr uint16_t kFlagBlockStatusPayload = 1u << 12;

// ---- Transmission magics ----
inline constexpr uint32_t kRequestMagic = 0x25609513;
inline constexpr uint32_t kExtendedRequestMagic = 0x21e41c71;
inline constexpr uint32_t kSimpleReplyMagic = 0x67446698;
inline constexpr uint32_t kStructuredReplyMagic = 0x668e33ef;
inline constexpr uint32_t kExtendedReplyMagic = 0x6e8a278c;

// ---- Commands ----
inline constexpr uint16_t kCmdRead = 0;
inline constexpr uint16_t kCmdWrite = 1;
inline constexpr uint16_t kCmdDisc = 2;
inline constexpr uint16_t kCmdFlush = 3;
inline constexpr uint16_t kCmdTrim = 4;
inline constexpr uint16_t kCmdCache = 5;
inline constexpr uint16_t kCmdWriteZeroes = 6;
inline constexpr uint16_t kCmdBlockStatus = 7;
inline constexpr uint16_t kCmdResize = 8;

// ---- Command flags ----
inline constexpr uint16_t kCmdFlagFua = 1u << 0;
inline constexpr uint16_t kCmdFlagNoHole = 1u << 1;
inline constexpr uint16_t kCmdFlagDf = 1u << 2;
inline constexpr uint16_t kCmdFlagReqOne = 1u << 3;
inline constexpr uint16_t kCmdFlagFastZero = 1u << 4;
inline constexpr uint16_t kCmdFlagPayloadLen = 1u << 5;
inline constexpr uint16_t kCmdFlagsKnown =
    kCmdFlagFua | kCmdFlagNoHole | kCmdFlagDf | kCmdFlagReqOne | kCmdFlagFastZero;

// ---- Errors (NBD wire values, not host errno) ----
inline constexpr uint32_t kNbdOk = 0;
inline constexpr uint32_t kNbdEperm = 1;
inline constexpr uint32_t kNbdEio = 5;
inline constexpr uint32_t kNbdEnomem = 12;
inline constexpr uint32_t kNbdEinval = 22;
inline constexpr uint32_t kNbdEnospc = 28;
inline constexpr uint32_t kNbdEoverflow = 75;
inline constexpr uint32_t kNbdEnotsup = 95;
inline constexpr uint32_t kNbdEshutdown = 108;

// ---- Structured reply ----
inline constexpr uint16_t kReplyFlagDone = 1u << 0;
inline constexpr uint16_t kReplyTypeNone = 0;
inline constexpr uint16_t kReplyTypeOffsetData = 1;
inline constexpr uint16_t kReplyTypeOffsetHole = 2;
inline constexpr uint16_t kReplyTypeBlockStatus = 5;
inline constexpr uint16_t kReplyTypeBlockStatusExt = 6;
inline constexpr uint16_t kReplyTypeErrorBit = 1u << 15;
inline constexpr uint16_t kReplyTypeError = kReplyTypeErrorBit | 1;
inline constexpr uint16_t kReplyTypeErrorOffset = kReplyTypeErrorBit | 2;

// ---- base:allocation flags ----
inline constexpr uint32_t kStateHole = 1u << 0;
inline constexpr uint32_t kStateZero = 1u << 1;

// ---- Fixed sizes ----
inline constexpr size_t kOptionHeaderSize = 16;       // IHAVEOPT, option, length
inline constexpr size_t kOptionReplyHeaderSize = 20;  // magic, option, type, length
inline constexpr size_t kRequestHeaderSize = 28;
inline constexpr size_t kSimpleReplySize = 16;
inline constexpr size_t kChunkHeaderSize = 20;
inline constexpr size_t kExportNameZeroes = 124;  // padding after NBD_OPT_EXPORT_NAME reply

// ---- Limits ----
inline constexpr uint32_t kMaxStringLength = 4096;             // names, queries, messages
inline constexpr uint32_t kMaxPayload = 32u << 20;             // advertised max payload (32 MiB)
inline constexpr uint32_t kMaxOptionLength = 64u << 10;        // largest option data we parse
inline constexpr uint32_t kMaxOptionSkip = 1u << 20;           // larger options end the connection
inline constexpr uint32_t kMaxMinBlockSize = 64u << 10;        // largest legal minimum block size
inline constexpr size_t kMaxExtentsPerChunk = (1u << 20) / 8;  // like QEMU: 1 MiB of extents

// Human-readable names for logs ("READ", "NBD_OPT_GO"...); "unknown" for others.
const char* command_name(uint16_t type);
const char* option_name(uint32_t option);

}  // namespace server::nbd
