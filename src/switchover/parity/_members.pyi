from switchover.parity.rawjson import Member, Text

VERSION: int

def differing_members(a: Text, b: Text, /) -> list[Member] | None: ...
