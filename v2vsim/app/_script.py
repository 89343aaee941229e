"""The file ``streamlit run`` is given (``v2vsim app`` passes it): the page is
:func:`v2vsim.app.page.main`, imported as a module so that its imports are the package's."""

from v2vsim.app.page import main

main()
