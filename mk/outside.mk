# Included first by every makefile here: what comes from outside is text, never Make code.
# Each variable of the environment or of the command line becomes a simple variable holding its
# value as typed ($(value ...): a `$(shell ...)` in it stays text), exported to the recipes as
# before. One of the environment stays below the makefiles' own assignments, one of the command
# line above them (`override`), as Make ranks them. Names with other characters than letters,
# digits and _ are left alone: no makefile here refers to one, and such a name is not safe to
# $(eval). Every makefile defines its own variables unconditionally, so no value from outside
# stands in for one; the values meant to come from outside are named, and checked where read.
NAME_CHARS := a b c d e f g h i j k l m n o p q r s t u v w x y z A B C D E F G H I J K L M N \
              O P Q R S T U V W X Y Z 0 1 2 3 4 5 6 7 8 9 _
# $(1) without the characters $(2): empty for a plain name
not_name = $(if $(2),$(call not_name,$(subst $(firstword $(2)),,$(1)),$(wordlist 2,99,$(2))),$(1))
MAKE_OWN := MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES MAKEFILES MAKE_TERMOUT MAKE_TERMERR \
            GNUMAKEFLAGS MAKECMDGOALS SHELL
$(foreach v,$(filter-out $(MAKE_OWN),$(.VARIABLES)),$(if $(filter environment command,$(origin \
  $(v))),$(if $(call not_name,$(v),$(NAME_CHARS)),,$(eval $(if $(filter command,$(origin \
  $(v))),override) $(v) := $$(value $(v)))$(eval export $(v)))))
# Make itself reads the makefiles that MAKEFILES names, and expands it, before this file: at
# least no make below this one does.
unexport MAKEFILES
